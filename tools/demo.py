#!/usr/bin/env python3
"""make demo: an IoT device reboots; its VPN gateway notices in one round trip.

Two real IKEv2 peers talk over UDP on this machine:
  gateway  qcd-peer on CPython, QCD token taker (or a local strongSwan
           with --peer strongswan: it does not implement QCD)
  device   the firmware app (firmware/main.py -> qcdapp: config, the `qcd`
           partition on the flash emulator, the store, the QCD hook, the IKE
           loop), QCD token maker, on the WebAssembly MicroPython virtual
           board when it has network (vboard --net), else on CPython
           (qcdhost.emu.hostapp); the first line says which.

Run 1, with QCD: the gateway brings the tunnel up and stores the device's
token; the device's power is cut (SIGKILL, possibly mid-write) and it boots
again on the same flash image; the gateway's next ESP packet or liveness
check gets the unprotected INVALID_SPI / INVALID_IKE_SPI + QCD answer, the
gateway deletes the stale SA and brings a new one up. Run 2: the same
reboot, the gateway without QCD (RFC 7296 alone): it retransmits its
liveness check until it gives up. Then the comparison, a pcap of every
datagram and a timeline picture.

  tools/demo.py [--peer ours|strongswan] [--sas N] [--style 5.1|5.2]
                [--device auto|wasm|cpython] [--out DIR] [--wait-default]
                [--readings]

--readings: the device runs the example app firmware/readings.py instead
(the IKE loop as an asyncio task, a reading through the tunnel every 0.5 s
to the gateway's UDP echo service, `qcd-peer --echo 7`): the readings stop
at the power cut (SIGKILL: --cut-idle) and resume once the new tunnel is
up; the timeline shows each reading answered or lost.
"""
import argparse
import datetime
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from qcdhost.emu import vboard as _vboard
from qcdhost.ikeshell import control
from qcdhost.paths import CHECKOUT as ROOT

PY = sys.executable
# The host commands, run as this Python's modules (the installed package).
QCD_PEER = [PY, "-m", "qcdhost.peer"]
HOSTAPP = [PY, "-m", "qcdhost.emu.hostapp"]
VBOARD = [PY, "-m", "qcdhost.emu.vboard"]
QCDBOARD = [PY, "-m", "qcdhost.qcdboard"]
PSK = "demo-pre-shared-key-0123456789"

# The gateway's liveness schedule in the demo: a liveness check after 2 s
# without traffic from the device, then retransmissions 1 s, 1.8 s, 3.24 s
# apart and 5.8 s more before giving up (RFC 7296 §2.4; strongSwan's formula
# with a tight timeout): the demo can wait for it.
DEMO_DPD_S = 2
DEMO_RETRANSMIT = {"timeout_s": 1.0, "base": 1.8, "tries": 3}
# strongSwan's defaults (strongswan.conf charon.retransmit_*), for the
# computed figure: 4 s x (1 + 1.8 + ... + 1.8^5) = 165 s, after dpd_delay.
SWAN_DEFAULT = {"timeout_s": 4.0, "base": 1.8, "tries": 5}
SWAN_DEFAULT_DPD_S = 30  # a common dpd_delay; strongswan-here.md uses 5 s

T0 = time.monotonic()
T0_WALL = time.time()


def ts():
    return time.monotonic() - T0


def say(who, text):
    print("%8.3f s  %-8s %s" % (ts(), who, text), flush=True)


def giveup_s(sched):
    """Seconds from the first liveness check to giving up (RFC 7296 §2.4)."""
    t, total = sched["timeout_s"], 0.0
    for _ in range(sched["tries"] + 1):
        total += t
        t *= sched["base"]
    return total


class Proc:
    """A child process whose stdout lines are kept with their arrival time."""

    all = []  # every one started, so that any exit of the demo stops them

    def __init__(self, name, cmd, log_path, env=None):
        self.name = name
        self.lines = []  # (demo time, text)
        self.q = queue.Queue()
        self.log = open(log_path, "a")
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env, start_new_session=True)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()
        Proc.all.append(self)

    def _read(self):
        for line in self.p.stdout:
            line = line.rstrip("\n")
            now = ts()
            self.lines.append((now, line))
            self.log.write(line + "\n")
            self.log.flush()
            self.q.put((now, line))

    def alive(self):
        return self.p.poll() is None

    def kill(self):
        if self.alive():
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait()

    def stop(self):
        if self.alive():
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def booted(dev):
    """The device's IKE loop is listening: the blocking one (qcdapp) or the
    asyncio one (readings)."""
    return any("listening" in l or "asyncio loop on" in l for _, l in dev.lines)


def answered(line):
    return "app: answer from" in line


def wall_of(line):
    """The UTC timestamp qcd-peer puts first on each log line, as time.time()."""
    try:
        stamp = line.split(" ", 1)[0]
        return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        return None


def free_ports(n, host="127.0.0.1"):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host, 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def wasm_device_available():
    """Has the virtual board network (vboard --net), and its port?"""
    return os.path.isdir(_vboard.WASM_PKG) and shutil.which("node")


def read_pcap_ipv4(path):
    """(time, IPv4 packet) of a classic pcap file whose link type is IPv4
    (228), raw IP (101) or Ethernet (1); a record cut short at the end (a
    killed writer) is dropped."""
    import struct

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return []
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        order = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        order = ">"
    else:
        return []  # pcapng or not a capture
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    link = struct.unpack_from(order + "I", data, 20)[0]
    out, pos = [], 24
    while pos + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack_from(order + "IIII", data, pos)
        if pos + 16 + incl > len(data):
            break
        pkt = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        if link == 1:
            if pkt[12:14] != b"\x08\x00":
                continue
            pkt = pkt[14:]
        elif link not in (101, 228):
            continue
        out.append((sec + frac / (1e9 if nano else 1e6), pkt))
    return out


def after_first_swan(events, t_back, t_gone):
    """Seconds from strongSwan's first packet after the device was back up
    to the stale SA's end (events: (demo time, what) from the capture)."""
    ts_ = [t for t, what in events if t >= t_back and t <= t_gone]
    return (t_gone - min(ts_)) if ts_ else None


def swan_events(pcap, gw_addr):
    """(time, what) of the gateway's IKE requests and ESP packets in a
    capture: the first request of each Message ID is a liveness check
    (INFORMATIONAL) or another request; repeats are retransmissions."""
    import struct

    out, seen = [], set()
    gw = bytes(int(x) for x in gw_addr.split("."))
    for t, ip in read_pcap_ipv4(pcap):
        if len(ip) < 28 or ip[9] != 17 or ip[12:16] != gw:
            continue
        udp = ip[(ip[0] & 15) * 4 :]
        ike = udp[8:]
        if struct.unpack_from(">H", udp, 2)[0] == 4500:
            if ike[:4] != bytes(4):
                out.append((t, "ESP"))
                continue
            ike = ike[4:]
        if len(ike) < 28 or ike[19] & 0x20:
            continue  # a response
        key = (ike[:16], ike[20:24])
        what = "retransmission" if key in seen else ("liveness check" if ike[18] == 37 else "request")
        seen.add(key)
        out.append((t, what))
    return out


class Demo:
    def __init__(self, args):
        self.a = args
        self.out = os.path.abspath(args.out)
        self.runs = []
        self.ike_ports, self.natt_ports, self.ports_std = set(), set(), False
        self.readings = bool(getattr(args, "readings", False))

    # -- configuration -----------------------------------------------------

    def endpoints(self):
        """(gateway, device) as (addr, IKE port, NAT-T port): the standard
        ports 500/4500 on 127.0.0.1 and 127.0.0.2 when we may bind them and
        no other demo holds them (so Wireshark decodes the pcap as it is),
        else free high ports."""
        std = (("127.0.0.1", 500, 4500), ("127.0.0.2", 500, 4500))
        if os.geteuid() == 0 and self.claim_std_ports():
            socks = []
            try:
                for addr, p1, p2 in std:
                    for port in (p1, p2):
                        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        socks.append(s)
                        s.bind((addr, port))
                return std[0], std[1], True
            except OSError:
                pass
            finally:
                for s in socks:
                    s.close()
        g, d = free_ports(2), free_ports(2)
        return ("127.0.0.1", g[0], g[1]), ("127.0.0.1", d[0], d[1]), False

    def claim_std_ports(self):
        """Whether this demo may use the standard ports: only one demo on
        the machine at a time (an exclusive lock, held until this process
        ends, so it goes with a kill too). A free-port check alone is not
        enough: both peers bind with SO_REUSEADDR, so a second demo that
        checks while the first one's device is down (booting, or at its
        power cut) binds the same addresses too, and each gateway then gets
        the other device's answers: tokens it cannot verify ("not
        accepted"), retransmissions answered by the wrong device."""
        if getattr(self, "_std_lock", None) is not None:
            return True
        import fcntl
        import tempfile

        f = open(os.path.join(tempfile.gettempdir(), "qcd-demo-std-ports.lock"), "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            return False
        self._std_lock = f
        return True

    def configs(self, qcd, gw_ep, dev_ep):
        gw = {
            "role": "initiator",
            "local": {"addr": gw_ep[0], "port": gw_ep[1], "natt_port": gw_ep[2]},
            "peer": {"addr": dev_ep[0], "port": dev_ep[1], "natt_port": dev_ep[2]},
            "psk": PSK,
            "id_local": "gw.example",
            "id_peer": "dev.example",
            "ts_local": ["10.1.0.0/16"],
            "ts_peer": ["10.2.0.0/24"],
            "nat_t": "force",  # ESP-in-UDP on the NAT-T port, as behind a NAT
            "dpd_s": DEMO_DPD_S,
            "retransmit": DEMO_RETRANSMIT,
            "reinitiate_s": 0,  # RFC 6290 §3 step 5: start a new IKE SA at once
            "start_delay_s": None,
            "qcd": {"role": "taker" if qcd else "none"},
        }
        dev = {
            "device": {"watchdog_s": 60, "partition": "qcd"},
            "role": "responder",
            "local": {"addr": dev_ep[0], "port": dev_ep[1], "natt_port": dev_ep[2]},
            "psk": PSK,
            "id_local": "dev.example",
            "id_peer": "gw.example",
            "ts_local": ["10.2.0.0/24"],
            "ts_peer": ["10.1.0.0/16"],
            "dpd_s": 0,
            "qcd": {"role": "maker", "style": self.a.style},
        }
        if self.readings:
            # the data plane (ike.tunnel): the gateway's echo service at
            # 10.1.0.1:7 answers the device's readings from 10.2.0.1 (the
            # address the gateway's own test ESP packets go to, so the
            # device answers those pings too)
            gw["tunnel"] = {"inner_addr": "10.1.0.1"}
            dev["tunnel"] = {"inner_addr": "10.2.0.1"}
            dev["app"] = {"to": "10.1.0.1:7", "every_s": 0.5, "port": 5000}
        return gw, dev

    # -- processes ----------------------------------------------------------

    def start_device(self, run, boot):
        d = run["dir"]
        log = os.path.join(d, "device.log")
        if self.device_kind == "wasm":
            # vboard execs the board (node), so the pid is the board's;
            # --app puts the firmware app, lib/ and the config into its fs/.
            run["cut_file"] = os.path.join(d, "cut-now")
            cmd = VBOARD + ["--dir", run["dir"], "--headless", "--net",
                   "--flash-encryption", "--app", run["dev_cfg"], "--cut-file", run["cut_file"]]
        else:
            cmd = HOSTAPP + ["--image", run["image"], "--config", run["dev_cfg"], "--encrypted"]
        if self.readings:
            cmd += ["--run", "readings"]
        say("device", "power on (boot %d)" % boot)
        return Proc("device", list(getattr(self, "netns", [])) + cmd, log)

    def power_cut(self, run, dev, procs, rekey):
        """Cut the device's power: in the middle of a flash write unless
        --cut-idle (the emulator is told to tear its next program or erase,
        and the gateway rekeys the Child SA, which makes the device's store
        write the new Child SPI mapping), or at once with SIGKILL. Returns
        the demo time and wall-clock time of the cut."""
        if not self.a.cut_idle and not self.readings:
            if self.device_kind == "wasm":
                open(run["cut_file"], "w").close()  # vboard --cut-file
            else:
                os.kill(dev.p.pid, signal.SIGUSR1)  # qcdhost.emu.hostapp arms the cut
            self.wait(procs, lambda: any("power cut armed" in l for _, l in dev.lines), 10)
            say("gateway", "rekeys the Child SA: the device's store writes the new Child SPI mapping...")
            rekey()
            end = time.monotonic() + 5
            while time.monotonic() < end and dev.alive():
                time.sleep(0.005)
            if not dev.alive():
                t = (ts(), time.time())
                time.sleep(0.05)
                self.pump([dev])
                say("device", "*** power cut in the middle of that flash write *** (the emulator tore it)")
                return t
        dev.kill()
        t = (ts(), time.time())
        say("device", "*** power cut *** (SIGKILL: RAM gone, the flash image as it was)")
        return t

    def start_gateway(self, run):
        cmd = QCD_PEER + ["run", run["gw_cfg"], "--control", run["ctl"], "--pcap", run["pcap"]] + (["--echo", "7"] if self.readings else [])
        return Proc("gateway", cmd, os.path.join(run["dir"], "gateway.log"))

    def ctl(self, run, command):
        return control(run["ctl"], command, timeout=20.0)

    def up_sas(self, run):
        st = self.ctl(run, "status")
        return [s for s in st["ike_sas"] if s["state"] in ("ESTABLISHED", "REKEYING") and s["children"]], st

    # -- echoing what the peers log ---------------------------------------------

    INTERESTING = ("qcd:", "established", "deleted", "up under", "store:", "wifi:", "listening",
                   "retransmit", "gave up", "liveness", "INVALID", "power cut", "flash:", "app:", "asyncio loop")

    def pump(self, procs):
        for p in procs:
            while True:
                try:
                    _t, line = p.q.get_nowait()
                except queue.Empty:
                    break
                text = line.split(" ", 1)[1] if wall_of(line) else line
                if text.startswith("[") and "ms]" in text:
                    text = text.split("ms]", 1)[1].strip()
                if any(k in text for k in self.INTERESTING):
                    say(p.name, text)

    def wait(self, procs, cond, timeout, progress=None, every=1.0):
        end = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < end:
            self.pump(procs)
            for p in procs:
                if not p.alive():
                    raise SystemExit("demo: the %s stopped unexpectedly; see %s" % (p.name, p.log.name))
            r = cond()
            if r:
                self.pump(procs)
                return r
            if progress and time.monotonic() - last >= every:
                last = time.monotonic()
                say("demo", progress())
            time.sleep(0.02)
        raise SystemExit("demo: timed out after %.0f s waiting; logs in %s" % (timeout, self.out))

    # -- one run ----------------------------------------------------------------

    def run(self, name, qcd):
        a = self.a
        d = os.path.join(self.out, name)
        os.makedirs(d, exist_ok=True)
        gw_ep, dev_ep, self.ports_std = self.endpoints()
        self.ike_ports |= {gw_ep[1], dev_ep[1]}
        self.natt_ports |= {gw_ep[2], dev_ep[2]}
        gw_cfg, dev_cfg = self.configs(qcd, gw_ep, dev_ep)
        run = {"name": name, "qcd": qcd, "dir": d, "ctl": os.path.join(d, "gw.ctl"), "pcap": os.path.join(d, "gateway.pcap"),
               "gw_cfg": os.path.join(d, "gateway.json"), "dev_cfg": os.path.join(d, "device.json"),
               "image": os.path.join(d, "qcd-partition.img"), "events": []}
        with open(run["gw_cfg"], "w") as f:
            json.dump(gw_cfg, f, indent=1)
        with open(run["dev_cfg"], "w") as f:
            json.dump(dev_cfg, f, indent=1)
        if self.device_kind == "wasm":
            self.prepare_vboard(run, dev_cfg)
        ev = run["events"]

        def mark(what, t=None):
            ev.append((ts() if t is None else t, what))

        print()
        say("demo", "=== %s ===" % ("run 1: gateway with QCD (RFC 6290 taker)" if qcd else "run 2: the same reboot, gateway without QCD (RFC 7296 alone)"))
        dev = self.start_device(run, 1)
        devs = [dev]
        self.wait([dev], lambda: booted(dev), 120, lambda: "waiting for the device to boot")
        mark("device up")
        gw = self.start_gateway(run)
        self.wait([dev, gw], lambda: os.path.exists(run["ctl"]), 60)
        self.ctl(run, "initiate")
        for k in range(1, a.sas):
            self.wait([dev, gw], lambda: len(self.up_sas(run)[0]) >= k, 60)
            self.ctl(run, "initiate")
        sas, st = self.wait([dev, gw], lambda: (lambda r: r if len(r[0]) >= a.sas else None)(self.up_sas(run)), 60, lambda: "bringing %d IKE SA(s) up" % a.sas)
        mark("tunnel up")
        held = st.get("hook", {}).get("tokens_held", 0)
        say("gateway", "%d IKE SA(s) and Child SA(s) up; QCD tokens held: %d" % (len(sas), held))
        self.ctl(run, "esp")  # traffic flows
        time.sleep(0.3)
        self.pump([dev, gw])

        # The power cut.
        stale = [(s["spi_i"], s["spi_r"]) for s in sas]
        t_cut, wall_cut = self.power_cut(run, dev, [dev, gw], lambda: self.ctl(run, "rekey-child"))
        mark("power cut", t_cut)
        dev = self.start_device(run, 2)
        devs.append(dev)
        self.wait([dev, gw], lambda: booted(dev), 120, lambda: "waiting for the device to boot")
        t_back, wall_back = ts(), time.time()
        mark("device back", t_back)

        # The gateway keeps sending into the stale tunnel (ESP every 0.5 s,
        # as traffic from the central site would) and checks liveness when
        # it hears nothing back. While its Child SA rekey (the one the cut
        # tore) is outstanding, that ESP goes on the old Child SA (RFC 7296
        # §2.8): the rebooted device answers it with INVALID_SPI + QCD
        # however long it took to boot, not only the rekey's retransmissions
        # (the last 6 s after the rekey) before the give-up.
        state = {"next_esp": 0.0}

        def gone():
            if time.monotonic() >= state["next_esp"]:
                state["next_esp"] = time.monotonic() + 0.5
                try:
                    self.ctl(run, "esp")
                except OSError:
                    pass
            cur, _ = self.up_sas(run)
            live = {(s["spi_i"], s["spi_r"]) for s in cur}
            return not (live & set(stale))

        def progress():
            rt = sum(1 for _, l in gw.lines if "retransmit" in l)
            return "waiting for the gateway to notice: %.1f s since the power cut, %d retransmission(s) so far" % (ts() - t_cut, rt)

        limit = 60 + giveup_s(DEMO_RETRANSMIT)
        self.wait([dev, gw], gone, limit, progress)
        t_gone = ts()
        # Exact times from the gateway's own log (ms resolution): its lines
        # after the cut, with their timestamps.
        after_cut = [(w, l) for w, l in ((wall_of(l), l) for _, l in gw.lines) if w and w > wall_cut]
        stale_names = ["IKE SA %s/%s deleted" % sp for sp in stale]
        deletions = [(w, l) for w, l in after_cut if any(n in l for n in stale_names)]
        del_wall = [w for w, _ in deletions]
        how = "?"
        if deletions:
            how = deletions[0][1].split("deleted", 1)[1].strip()
            if how.startswith("(") and how.endswith(")"):
                how = how[1:-1]
        # All stale SAs gone: the last deletion counts.
        detect_s = (max(del_wall) - wall_cut) if del_wall else (t_gone - t_cut)
        mark("stale SA deleted", t_cut + detect_s)
        # The packet that gave it away: the last one the gateway sent before the delete.
        sent = [w for w, l in after_cut if " out " in l or "retransmit" in l]
        before = [w for w in sent if del_wall and w <= min(del_wall)]
        rtt_ms = (min(del_wall) - before[-1]) * 1000 if before else None
        # From the gateway's first packet after the device was back up to
        # the deletion of the last stale SA: what the protocol itself costs.
        sends = [w for w in sent if w >= wall_back]
        after_first_s = (max(del_wall) - min(sends)) if sends and del_wall and min(sends) <= max(del_wall) else None
        say("gateway", "%s deleted %.3f s after the power cut (%s)" % ("stale IKE SA" if len(stale) == 1 else "all %d stale IKE SAs" % len(stale), detect_s, how))
        if qcd and rtt_ms is not None:
            if len(stale) == 1:
                say("gateway", "that is %.1f ms after its first packet to reach the rebooted device: one round trip" % rtt_ms)
            else:
                # Each stale SA goes one round trip after the gateway's own
                # packet for it; those packets leave at different times (its
                # schedule per SA), so the last deletion comes later.
                say("gateway", "the first stale SA went %.1f ms after the gateway's packet that reached the rebooted device: one round trip" % rtt_ms)
                if after_first_s is not None:
                    say("gateway", "the last went %.3f s after the gateway's first packet to the rebooted device (each SA goes at the next packet for it)" % after_first_s)

        def fresh_count():
            cur = {(s["spi_i"], s["spi_r"]) for s in self.up_sas(run)[0]}
            return len(cur - set(stale))

        self.wait([dev, gw], lambda: fresh_count() >= 1, 60, lambda: "waiting for the new tunnel")
        # The engine brings one IKE SA back by itself (reinitiate_s); the
        # others are started the way they were at first.
        for k in range(fresh_count(), a.sas):
            self.ctl(run, "initiate")
            self.wait([dev, gw], lambda: fresh_count() >= k + 1, 60)
        self.wait([dev, gw], lambda: fresh_count() >= a.sas, 60, lambda: "waiting for the new tunnels")
        after_cut = [(w, l) for w, l in ((wall_of(l), l) for _, l in gw.lines) if w and w > wall_cut]
        up_wall = sorted(w for w, l in after_cut if "Child SA" in l and "up under" in l)
        recover_s = (up_wall[a.sas - 1] - wall_cut) if len(up_wall) >= a.sas else ts() - t_cut
        mark("new tunnel up", t_cut + recover_s)
        say("gateway", "%s up %.3f s after the power cut" % ("new IKE SA and Child SA" if a.sas == 1 else "%d new IKE SAs and Child SAs" % a.sas, recover_s))
        resumed_s = None
        if self.readings:
            # the readings come back through the new tunnel
            self.wait([dev, gw], lambda: sum(1 for _, l in dev.lines if answered(l)) >= 3, 60, lambda: "waiting for the device's readings to come back")
            first = min(t for t, l in dev.lines if answered(l))
            resumed_s = first - t_cut
            before = [t for t, l in devs[0].lines if answered(l)]
            say("device", "readings answered again %.3f s after the power cut%s" % (resumed_s, " (the last before it: %.3f s before)" % (t_cut - before[-1]) if before else ""))
            for p in devs:
                for t, l in p.lines:
                    if answered(l):
                        ev.append((t, "reading answered"))
                    elif "not sent" in l or "app: no answer" in l:
                        ev.append((t, "reading lost"))
        st = self.ctl(run, "status")
        self.pump([dev, gw])
        gw.stop()
        dev.kill()
        # Gateway-side events for the timeline, relative to the power cut.
        for w, l in after_cut:
            if "out INFORMATIONAL request" in l:
                ev.append((t_cut + w - wall_cut, "liveness check" if "[]" in l else "INFORMATIONAL"))
            elif "retransmit" in l:
                ev.append((t_cut + w - wall_cut, "retransmission"))
            elif "ESP" in l and "out" in l:
                ev.append((t_cut + w - wall_cut, "ESP"))
        run.update(t_cut=t_cut, t_back=t_back, detect_s=detect_s, recover_s=recover_s, rtt_ms=rtt_ms, how=how, after_first_s=after_first_s, resumed_s=resumed_s,
                   counters=st.get("hook", {}), device_back_s=t_back - t_cut)
        self.runs.append(run)
        return run

    def run_strongswan(self, name):
        """Run 2 with a real gateway: strongSwan's charon (it does not
        implement QCD), in private namespaces (qcdhost.strongswan), with the
        same DPD schedule; its datagrams captured with dumpcap."""
        from qcdhost import strongswan

        why = strongswan.missing_reason()
        if why:
            raise SystemExit("demo: --peer strongswan needs %s (%s)" % why)
        a = self.a
        d = os.path.join(self.out, name)
        os.makedirs(d, exist_ok=True)
        run = {"name": name, "qcd": False, "dir": d, "pcap": os.path.join(d, "gateway.pcap"), "dev_cfg": os.path.join(d, "device.json"),
               "image": os.path.join(d, "qcd-partition.img"), "events": [], "swan": True}
        _, dev_cfg = self.configs(False, (strongswan.CHARON_ADDR, 500, 4500), (strongswan.PEER_ADDR, 500, 4500))
        with open(run["dev_cfg"], "w") as f:
            json.dump(dev_cfg, f, indent=1)
        if self.device_kind == "wasm":
            self.prepare_vboard(run, dev_cfg)
        print()
        say("demo", "=== run 2: the same reboot, strongSwan %s as the gateway (no QCD: RFC 7296 alone) ===" % "5.9")
        ch = strongswan.Charon(d, rt_timeout=DEMO_RETRANSMIT["timeout_s"], rt_base=DEMO_RETRANSMIT["base"], rt_tries=DEMO_RETRANSMIT["tries"]).start()
        cap = None
        try:
            dumpcap = shutil.which("dumpcap")
            if dumpcap:
                cap = subprocess.Popen(ch.netns() + [dumpcap, "-q", "-P", "-i", "v1", "-f", "udp", "-w", run["pcap"]],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            say("gateway", "charon up in its own network namespace (%s, ports 500/4500); DPD after %d s, retransmit %.0f s x %.1f^k, %d tries"
                % (strongswan.CHARON_ADDR, DEMO_DPD_S, DEMO_RETRANSMIT["timeout_s"], DEMO_RETRANSMIT["base"], DEMO_RETRANSMIT["tries"]))
            self.netns = ch.netns()
            dev = self.start_device(run, 1)
            self.wait([dev], lambda: booted(dev), 120, lambda: "waiting for the device to boot")
            ch.load("dev", "gw.example", "dev.example", PSK, "10.1.0.0/16", "10.2.0.0/24", dpd_delay=DEMO_DPD_S,
                    extra={"encap": "yes"}, child_extra={"dpd_action": "restart"})
            v = ch.session()

            def swan_sas():
                out = []
                for _n, sa in ch.sas("dev"):
                    if sa.get("state") == b"ESTABLISHED" and sa.get("child-sas"):
                        out.append((sa["initiator-spi"].decode(), sa["responder-spi"].decode()))
                return out

            for _ in range(a.sas):
                for _msg in v.initiate({"child": "net", "ike": "dev", "timeout": 20000}):
                    pass
            sas = self.wait([dev], lambda: (lambda r: r if len(r) >= a.sas else None)(swan_sas()), 60, lambda: "bringing the tunnel up")
            say("gateway", "strongSwan: %d IKE SA(s) up (it ignored the device's N(QUICK_CRASH_DETECTION), as RFC 6290 §3 allows)" % len(sas))
            stale = set(sas)
            time.sleep(0.3)
            def rekey():
                for _msg in v.rekey({"child": "net"}):
                    pass

            t_cut, wall_cut = self.power_cut(run, dev, [dev], rekey)
            dev = self.start_device(run, 2)
            self.wait([dev], lambda: booted(dev), 120, lambda: "waiting for the device to boot")
            t_back = ts()
            self.wait([dev], lambda: not (set(swan_sas()) & stale) or None, 120,
                      lambda: "waiting for strongSwan to notice: %.1f s since the power cut" % (ts() - t_cut), every=2.0)
            detect_s = ts() - t_cut
            say("gateway", "strongSwan dropped the stale IKE SA %.2f s after the power cut (DPD gave up; polled every 20 ms)" % detect_s)
            self.wait([dev], lambda: (set(swan_sas()) - stale) or None, 60, lambda: "waiting for the new tunnel")
            recover_s = ts() - t_cut
            say("gateway", "strongSwan: new IKE SA and Child SA up %.2f s after the power cut (dpd_action = restart)" % recover_s)
            self.pump([dev])
            dev.kill()
        finally:
            self.netns = []
            if cap is not None:
                time.sleep(0.3)
                os.killpg(cap.pid, signal.SIGTERM)
                cap.wait()
            ch.stop()
        run["events"] = [(t_cut + t - wall_cut, what) for t, what in swan_events(run["pcap"], strongswan.CHARON_ADDR) if t >= wall_cut]
        run.update(t_cut=t_cut, t_back=t_back, detect_s=detect_s, recover_s=recover_s, rtt_ms=None, how="strongSwan DPD",
                   after_first_s=after_first_swan(run["events"], t_back, t_cut + detect_s),
                   counters={}, device_back_s=t_back - t_cut)
        self.runs.append(run)
        return run

    def prepare_vboard(self, run, dev_cfg):
        # A whole-flash image with the qcd partition table; the device's
        # config and app files in its filesystem directory.
        run["flash"] = os.path.join(run["dir"], "flash.bin")
        run["fsdir"] = os.path.join(run["dir"], "fs")
        os.makedirs(run["fsdir"], exist_ok=True)
        subprocess.run(QCDBOARD + ["image", "--out", run["flash"]], check=True, capture_output=True)
        with open(os.path.join(run["fsdir"], "qcd.json"), "w") as f:
            json.dump(dev_cfg, f)

    # -- the whole demo --------------------------------------------------------------

    def main(self):
        a = self.a
        if os.path.isdir(self.out):
            shutil.rmtree(self.out)
        os.makedirs(self.out)
        want = a.device
        if want == "auto":
            want = "wasm" if wasm_device_available() else "cpython"
        if want == "wasm" and not wasm_device_available():
            raise SystemExit("demo: the WebAssembly board has no network here (vboard --net); use --device cpython")
        self.device_kind = want
        if want == "wasm":
            say("demo", "device: the firmware app on MicroPython 1.27 (WebAssembly virtual board, vboard --net)")
        else:
            say("demo", "device: the firmware app on CPython (qcdhost.emu.hostapp): the WebAssembly board has no network here")
        say("demo", "gateway: qcd-peer (lib/ike + lib/qcd) on CPython; %d IKE SA(s); token style RFC 6290 §%s" % (a.sas, a.style))
        say("demo", "output in %s" % os.path.relpath(self.out, os.getcwd()))
        r1 = self.run("with-qcd", True)
        if a.no_baseline:
            r2 = None
        elif a.peer == "strongswan":
            r2 = self.run_strongswan("strongswan")
        else:
            r2 = self.run("without-qcd", False)
        self.report(r1, r2)
        return 0

    def report(self, r1, r2):
        print()
        say("demo", "=== results ===")
        dflt = giveup_s(SWAN_DEFAULT)
        def fmt(v, digits):
            return "-" if v is None else ("%.*f s" % (digits, v))

        rows = [("time to detect the dead SA", "%.3f s" % r1["detect_s"], "%.1f s (measured)" % r2["detect_s"] if r2 else "-",
                 "%.0f-%.0f s (computed)" % (dflt, dflt + SWAN_DEFAULT_DPD_S)),
                ("  of which from the gateway's first packet" + (" (to the last SA deleted)" if self.a.sas > 1 else ""), fmt(r1.get("after_first_s"), 3),
                 (fmt(r2.get("after_first_s"), 1) + " (measured)") if r2 and r2.get("after_first_s") is not None else "-", "%.0f s (computed)" % dflt),
                ("time to recover (new SAs up)", "%.3f s" % r1["recover_s"], "%.1f s (measured)" % r2["recover_s"] if r2 else "-", "-")]
        if self.readings:
            rows.append(("readings answered again", fmt(r1.get("resumed_s"), 3), (fmt(r2.get("resumed_s"), 1) + " (measured)") if r2 and r2.get("resumed_s") is not None else "-", "-"))
        w = max(len(r[0]) for r in rows)
        base = "strongSwan, demo DPD" if r2 and r2.get("swan") else "without QCD, demo DPD"
        print("  %-*s  %-12s  %-22s  %s" % (w, "", "with QCD", base, "without QCD, strongSwan defaults"))
        for r in rows:
            print("  %-*s  %-12s  %-22s  %s" % (w, r[0], r[1], r[2], r[3]))
        print("  (times from the power cut; the device took %.2f s to boot. Demo DPD: check after %d s of silence,"
              % (r1["device_back_s"], DEMO_DPD_S))
        print("   retransmit %.0f s x %.1f^k, %d tries = %.1f s. strongSwan defaults: 4 s x 1.8^k, 5 tries = %.0f s after a dpd_delay)"
              % (DEMO_RETRANSMIT["timeout_s"], DEMO_RETRANSMIT["base"], DEMO_RETRANSMIT["tries"], giveup_s(DEMO_RETRANSMIT), dflt))
        if r2:
            say("demo", "QCD found the dead SA %.0fx sooner than the tight DPD schedule, %.0fx sooner than strongSwan's defaults would"
                % (r2["detect_s"] / max(r1["detect_s"], 1e-3), dflt / max(r1["detect_s"], 1e-3)))
        pcap = self.write_pcap()
        png = self.write_timeline(r1, r2)
        with open(os.path.join(self.out, "results.json"), "w") as f:
            json.dump({"device": self.device_kind, "sas": self.a.sas, "style": self.a.style,
                       "runs": [{k: r.get(k) for k in ("name", "detect_s", "after_first_s", "recover_s", "rtt_ms", "how", "device_back_s", "resumed_s")} for r in self.runs]}, f, indent=1)
        say("demo", "pcap of every datagram: %s%s" % (os.path.relpath(pcap, os.getcwd()) if pcap else "(not written)", self.decode_hint(pcap)))
        if png:
            say("demo", "timeline picture: %s" % os.path.relpath(png, os.getcwd()))

    def decode_hint(self, pcap):
        """Decode the QCD answers of the pcap with tshark, if it is here, and
        say how to open the file in Wireshark."""
        if not pcap:
            return ""
        dec = []
        if self.ports_std:
            hint = " (standard IKE ports: Wireshark decodes it as it is)"
        else:
            for p in self.ike_ports:
                dec += ["-d", "udp.port==%d,isakmp" % p]
            for p in self.natt_ports:
                dec += ["-d", "udp.port==%d,udpencap" % p]
            hint = " (open with: wireshark %s %s)" % (" ".join(dec), os.path.relpath(pcap, os.getcwd()))
        tshark = shutil.which("tshark")
        if tshark:
            p = subprocess.run([tshark, "-r", pcap, *dec, "-Y", "isakmp.notify.msgtype == 16419 && !isakmp.enc.data",
                                "-T", "fields", "-e", "frame.number", "-e", "ip.src", "-e", "ip.dst", "-e", "isakmp.exchangetype",
                                "-e", "isakmp.flags", "-e", "isakmp.notify.msgtype", "-e", "isakmp.notify.data.qcd.token_secret_data"],
                               capture_output=True, text=True, timeout=120)
            rows = [r.split("\t") for r in p.stdout.splitlines() if r.strip()]
            if rows:
                say("demo", "tshark decodes %d unprotected answer(s) with QUICK_CRASH_DETECTION in the pcap; the first:" % len(rows))
                r = rows[0]
                print("            frame %s  %s -> %s  exchange %s  flags %s  notify types %s" % (r[0], r[1], r[2], r[3], r[4], r[5]))
                print("            token (TOKEN_SECRET_DATA) %s" % (r[6].split(",")[0][:47] + "..."))
        return hint

    def write_pcap(self):
        """Every datagram of every run, in one pcap (LINKTYPE_IPV4,
        microseconds): qcd-peer's own captures (--pcap, LINKTYPE_IPV4) and
        dumpcap's on strongSwan's veth (Ethernet), record by record. Done by
        hand because the format is two fixed headers, and scapy mangles the
        IPv4 link type (it rereads it as Raw)."""
        import struct

        recs = []
        for r in self.runs:
            for t, ip in read_pcap_ipv4(r["pcap"]):
                recs.append((t, ip))
        if not recs:
            return None
        out = os.path.join(self.out, "demo.pcap")
        with open(out, "wb") as w:
            w.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 228))
            for t, ip in recs:
                sec = int(t)
                w.write(struct.pack("<IIII", sec, int((t - sec) * 1e6), len(ip), len(ip)))
                w.write(ip)
        return out

    def write_timeline(self, r1, r2):
        """A picture of both runs on one time axis (seconds since the power cut)."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        base = "strongSwan, no QCD\n(demo DPD, measured)" if r2 and r2.get("swan") else "without QCD\n(demo DPD, measured)"
        lanes = [("with QCD", r1)] + ([(base, r2)] if r2 else [])
        fig, ax = plt.subplots(figsize=(11, 1.5 + 0.8 * (len(lanes) + 1)))
        styles = {"ESP": ("o", "#7f7f7f", 4), "liveness check": ("^", "#1f77b4", 7), "retransmission": ("x", "#d62728", 7),
                  "INFORMATIONAL": ("^", "#1f77b4", 7), "reading answered": ("|", "#2ca02c", 9), "reading lost": ("|", "#bbbbbb", 9)}
        for y, (label, r) in enumerate(reversed(lanes)):
            t0 = r["t_cut"]
            ax.axhline(y, color="#dddddd", lw=1, zorder=0)
            seen = set()
            for t, what in sorted(r["events"]):
                x = t - t0
                end = max(r["recover_s"], r.get("resumed_s") or 0) + (2.0 if what.startswith("reading") else 0.01)
                if x < 0 or x > end or what not in styles:
                    continue
                m, c, size = styles[what]
                ax.plot([max(x, 1e-3)], [y], m, color=c, ms=size, label=what if what not in seen else None)
                seen.add(what)
            ax.plot([1e-3], [y], "v", color="black", ms=9)
            ax.plot([max(r["device_back_s"], 1e-3)], [y], "s", color="#9467bd", ms=6)
            ax.plot([r["detect_s"]], [y], "*", color="#d62728", ms=16)
            ax.annotate("stale SA deleted\n%.3f s" % r["detect_s"], (r["detect_s"], y), textcoords="offset points", xytext=(6, 8), fontsize=8)
            ax.plot([r["recover_s"]], [y], "o", color="#2ca02c", ms=9, mfc="none", mew=2)
        yb = len(lanes)
        dflt = giveup_s(SWAN_DEFAULT)
        ax.plot([SWAN_DEFAULT_DPD_S, SWAN_DEFAULT_DPD_S + dflt], [yb, yb], "-", color="#ff7f0e", lw=6, solid_capstyle="butt")
        ax.annotate("computed: dpd_delay %d s, then %.0f s of retransmissions" % (SWAN_DEFAULT_DPD_S, dflt),
                    (SWAN_DEFAULT_DPD_S, yb), textcoords="offset points", xytext=(-60, 9), fontsize=8)
        ax.set_yticks(range(len(lanes) + 1))
        ax.set_yticklabels([l for l, _ in reversed(lanes)] + ["without QCD\n(strongSwan defaults)"])
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlim(-0.05, 300)
        ax.set_ylim(-0.7, len(lanes) + 0.8)
        ax.set_xlabel("seconds since the device's power cut (linear to 1 s, then logarithmic)")
        from matplotlib.lines import Line2D

        legend = [Line2D([], [], marker="v", color="black", ls="", label="power cut"),
                  Line2D([], [], marker="s", color="#9467bd", ls="", label="device booted"),
                  Line2D([], [], marker="o", color="#7f7f7f", ls="", ms=4, label="gateway ESP"),
                  Line2D([], [], marker="^", color="#1f77b4", ls="", label="liveness check"),
                  Line2D([], [], marker="x", color="#d62728", ls="", label="retransmission"),
                  Line2D([], [], marker="*", color="#d62728", ls="", ms=12, label="stale SA deleted"),
                  Line2D([], [], marker="o", color="#2ca02c", ls="", mfc="none", mew=2, label="new tunnel up")]
        if self.readings:
            legend += [Line2D([], [], marker="|", color="#2ca02c", ls="", ms=9, label="reading answered"),
                       Line2D([], [], marker="|", color="#bbbbbb", ls="", ms=9, label="reading lost")]
        ax.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=5 if len(legend) > 7 else len(legend), fontsize=8, frameon=False)
        ax.set_title("An IoT device reboots: when does its VPN gateway notice? (RFC 6290 QCD vs RFC 7296 liveness checks)", fontsize=10)
        fig.tight_layout()
        out = os.path.join(self.out, "timeline.png")
        fig.savefig(out, dpi=110)
        plt.close(fig)
        return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--peer", choices=("ours", "strongswan"), default="ours", help="the gateway: our engine (QCD taker) or a local strongSwan")
    p.add_argument("--sas", type=int, default=1, help="IKE SAs (each with a Child SA) between gateway and device")
    p.add_argument("--style", choices=("5.1", "5.2"), default="5.1", help="token over the SPIs (5.1) or also the gateway's address (5.2)")
    p.add_argument("--device", choices=("auto", "wasm", "cpython"), default="auto", help="where the device's firmware app runs")
    p.add_argument("--out", default=os.path.join(ROOT, "build", "demo"), help="directory for logs, pcap and picture")
    p.add_argument("--no-baseline", action="store_true", help="skip run 2 (without QCD)")
    p.add_argument("--cut-idle", action="store_true", help="cut the power while the device is idle, not in the middle of a flash write")
    p.add_argument("--readings", action="store_true", help="the device runs firmware/readings.py: readings through the tunnel stop at the power cut and resume (implies --cut-idle)")
    a = p.parse_args(argv)
    if not 1 <= a.sas <= 20:
        p.error("--sas must be 1 to 20")
    if a.readings and a.peer != "ours":
        p.error("--readings needs our gateway (its UDP echo service answers the readings)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return Demo(a).main()
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        return 130
    finally:
        for p in Proc.all:
            p.kill()


if __name__ == "__main__":
    sys.exit(main())

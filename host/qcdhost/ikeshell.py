# The CPython I/O shell around ike.engine: two UDP sockets (the IKE port and
# the NAT-T port), a monotonic clock, optional pcap capture of every
# datagram sent and received, an optional control socket, and a clean stop
# on SIGINT/SIGTERM. Host only (qcd-peer uses it); a device uses
# ike.device (this module is outside lib/, so never on a board).

import json
import os
import select
import signal
import socket
import struct
import time

from ike import state
from ike.engine import NON_ESP_MARKER  # noqa: F401  (re-exported for tools)
from ike.ts import ipv4

# pcap (https://wiki.wireshark.org/Development/LibpcapFileFormat) with
# LINKTYPE_IPV4 (228): each record is an IPv4 + UDP header we synthesise
# around the datagram, so tshark and Wireshark decode IKE and ESP-in-UDP.
_PCAP_MAGIC = 0xA1B2C3D4
_LINKTYPE_IPV4 = 228


class Pcap:
    def __init__(self, path):
        self.f = open(path, "wb")
        self.f.write(struct.pack("<IHHiIII", _PCAP_MAGIC, 2, 4, 0, 0, 65535, _LINKTYPE_IPV4))
        self.f.flush()
        self._id = 0

    def write(self, src, dst, payload):
        self._id = (self._id + 1) & 0xFFFF
        udp = struct.pack(">HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
        total = 20 + len(udp)
        hdr = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, self._id, 0, 64, 17, 0, ipv4(src[0]), ipv4(dst[0]))
        s = sum(struct.unpack(">10H", hdr))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        hdr = hdr[:10] + struct.pack(">H", ~s & 0xFFFF) + hdr[12:]
        t = time.time()
        pkt = hdr + udp
        self.f.write(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(pkt), len(pkt)))
        self.f.write(pkt)
        self.f.flush()

    def close(self):
        self.f.close()


def stamp():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


def make_logger(stream):
    def log(line):
        stream.write("%s %s\n" % (stamp(), line))
        stream.flush()

    return log


# Control commands that act on an IKE SA that is up.
_NEEDS_SA = ("liveness", "rekey-ike", "rekey-child", "delete-child", "delete-ike", "esp")


class HostShell:
    """Runs an Engine on real UDP sockets.

    engine      an ike.engine.Engine (its config gives the local address/ports)
    pcap        path of a pcap file to write every datagram to, or None
    control     path of a Unix datagram socket for commands, or None
    log         callable(line) for the shell's own lines
    status      callable() -> dict merged into the "status" answer (the hook's)
    commands    {name: callable(words) -> dict}: more control commands
    """

    def __init__(self, engine, pcap=None, control=None, log=None, status=None, quiet_stop=False, commands=None):
        self.eng = engine
        self.commands = commands or {}
        self.log = log or (lambda line: None)
        self.status_extra = status
        self.pcap = Pcap(pcap) if pcap else None
        self.control_path = control
        self.quiet_stop = quiet_stop
        self._t0 = time.monotonic()
        self._stop = False
        self.ike = self.natt = self.ctl = None

    def now(self):
        return int((time.monotonic() - self._t0) * 1000)

    def open(self):
        cfg = self.eng.cfg
        self.ike = self._udp(cfg.local_addr, cfg.local_port)
        self.natt = self._udp(cfg.local_addr, cfg.local_natt_port)
        port = self.ike.getsockname()[1]
        natt_port = self.natt.getsockname()[1]
        self.eng.bind(cfg.local_addr, port, natt_port)
        if self.control_path:
            try:
                os.unlink(self.control_path)
            except OSError:
                pass
            self.ctl = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.ctl.bind(self.control_path)
        self.log("listening on %s port %d, NAT-T port %d" % (cfg.local_addr, port, natt_port))
        return port, natt_port

    @staticmethod
    def _udp(addr, port):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.setblocking(False)
        return s

    def stop(self, *_args):
        self._stop = True

    def install_signals(self):
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def _flush(self):
        for data, dst, natt in self.eng.take_datagrams():
            sock = self.natt if natt else self.ike
            try:
                sock.sendto(data, dst)
            except OSError as e:
                self.log("send to %s:%d failed: %s" % (dst[0], dst[1], e))
                continue
            if self.pcap:
                self.pcap.write(sock.getsockname(), dst, data)
        for ev in self.eng.take_events():
            self.on_event(ev)

    def on_event(self, ev):
        pass

    def _read(self, sock, natt):
        while True:
            try:
                data, src = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. ICMP port unreachable reported on the socket
            if self.pcap:
                self.pcap.write(src, sock.getsockname(), data)
            self.eng.receive(data, src, natt, self.now())
            self._flush()

    def _control(self):
        try:
            data, addr = self.ctl.recvfrom(4096)
        except OSError:
            return
        words = data.decode("utf-8", "replace").split()
        reply = self.command(words)
        if addr:
            try:
                self.ctl.sendto(json.dumps(reply).encode(), addr)
            except OSError:
                pass

    def command(self, words):
        """Run one control command; returns a JSON-able reply."""
        e = self.eng
        now = self.now()
        if not words:
            return {"ok": False, "error": "empty command"}
        cmd = words[0]
        ok = None
        if cmd == "status":
            st = e.status()
            if self.status_extra:
                st["hook"] = self.status_extra()
            st["ok"] = True
            st["ports"] = [e.local_port, e.local_natt_port]
            st["ike_sas_up"] = sum(1 for sa in e.sas.values() if sa.up())
            return st
        if cmd in _NEEDS_SA and not any(sa.up() for sa in e.sas.values()):
            # Said in the answer, not logged: `ctl --wait` asks again and
            # again while an initiator is still in its start_delay_s.
            return self.refused(cmd, {"packet": None} if cmd == "esp" else None)
        if cmd == "initiate":
            ok = e.initiate(now)
        elif cmd == "liveness":
            ok = e.liveness(now)
        elif cmd == "rekey-ike":
            ok = e.rekey_ike(now)
        elif cmd == "rekey-child":
            ok = e.rekey_child(now)
        elif cmd == "delete-child":
            ok = e.delete_child(now)
        elif cmd == "delete-ike":
            ok = e.delete_ike(now)
        elif cmd == "esp":
            payload = bytes.fromhex(words[1]) if len(words) > 1 else None
            pkt = e.send_esp(now, payload)
            ok = pkt is not None
            self._flush()
            if not ok:
                return self.refused(cmd, {"packet": None})
            return {"ok": ok, "packet": pkt.hex()}
        elif cmd == "stop":
            self.stop()
            ok = True
        elif cmd in self.commands:
            return self.commands[cmd](words)
        else:
            return {"ok": False, "error": "unknown command %r" % cmd}
        self._flush()
        if not ok:
            return self.refused(cmd)
        return {"ok": True}

    def refused(self, cmd, extra=None):
        """The answer to a command the engine did not start: why, in the
        answer itself (not only in the log), and "retry": true when waiting
        can change that (qcd-peer ctl --wait retries those)."""
        why, retry = self.why_not(cmd)
        out = {"ok": False, "error": why, "retry": retry}
        if extra:
            out.update(extra)
        return out

    def why_not(self, cmd):
        """(reason, whether it may pass by itself) for a refused command."""
        e = self.eng
        if cmd == "initiate":
            return "no peer address configured (peer.addr)", False
        ups = [sa for sa in e.sas.values() if sa.up()]
        if not ups:
            start_at = getattr(e, "_start_at", None)
            coming = [sa for sa in e.sas.values() if sa.state in (state.INIT_SENT, state.AUTH_SENT, state.INIT_DONE)]
            if start_at is not None:
                return "no IKE SA is up yet: this initiator starts one in %.1f s (start_delay_s or reinitiate_s)" % (max(0, start_at - self.now()) / 1000.0), True
            if coming:
                return "no IKE SA is up yet: IKE SA %s is being set up (%s)" % (coming[0].name(), coming[0].state), True
            if e.cfg.initiator:
                return "no IKE SA is up (none scheduled: `initiate` starts one)", False
            return "no IKE SA is up: this responder waits for its peer to start one", True
        if cmd in ("rekey-child", "delete-child", "esp"):
            kids = [c for sa in ups for c in sa.children if c.state == state.INSTALLED]
            if not kids:
                return "no Child SA is installed under IKE SA %s" % ups[-1].name(), True
            if cmd == "esp" and not any(sa.natt for sa in ups):
                return "ESP here is UDP-encapsulated only: IKE SA %s is not on the NAT-T port (\"nat_t\": \"force\")" % ups[-1].name(), False
        return "the engine did not start %s (its log line says why)" % cmd, False

    def run(self, max_s=None):
        """Serve until stop() (a signal, or the "stop" command). On a stop,
        Delete every IKE SA and wait up to 2 s for the answers, unless
        quiet_stop."""
        self.eng.start(self.now())
        end = None if max_s is None else self.now() + int(max_s * 1000)
        stopping_until = None
        try:
            while True:
                now = self.now()
                if self._stop and stopping_until is None:
                    if self.quiet_stop or not self.eng.shutdown(now):
                        break
                    self.log("stopping: deleting IKE SAs")
                    stopping_until = now + 2000
                    self._flush()
                if stopping_until is not None and (now >= stopping_until or not self.eng.sas):
                    break
                if end is not None and now >= end:
                    break
                due = self.eng.next_due()
                wait = 0.5 if due is None else max(0.0, min(0.5, (due - now) / 1000.0))
                rl = [self.ike, self.natt] + ([self.ctl] if self.ctl else [])
                try:
                    ready, _, _ = select.select(rl, [], [], wait)
                except InterruptedError:
                    continue
                for s in ready:
                    if s is self.ctl:
                        self._control()
                    else:
                        self._read(s, s is self.natt)
                self.eng.tick(self.now())
                self._flush()
        finally:
            self.close()
        self.log("stopped")

    def close(self):
        for s in (self.ike, self.natt, self.ctl):
            if s is not None:
                s.close()
        if self.ctl is not None and self.control_path:
            try:
                os.unlink(self.control_path)
            except OSError:
                pass
        if self.pcap:
            self.pcap.close()
            self.pcap = None


def control(path, command, timeout=10.0):
    """Send one command to a running shell's control socket; the reply dict."""
    import tempfile

    d = tempfile.mkdtemp(prefix="qcdctl")
    me = os.path.join(d, "c")  # a path, so the reply crosses network namespaces
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.bind(me)
        s.settimeout(timeout)
        s.sendto(command.encode(), path)
        data = s.recv(1 << 20)
        return json.loads(data.decode())
    finally:
        s.close()
        try:
            os.unlink(me)
            os.rmdir(d)
        except OSError:
            pass

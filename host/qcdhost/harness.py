# qcd-peer processes and headless virtual boards for the test suite and
# the benchmarks: a gateway or a device started from a configuration dict,
# its control socket, waiting for a state, a kill like a power cut.
# host_tests/peers.py and host_tests/vboard_util.py re-export it for the
# tests; bench/ imports it from here (no sys.path edits).
import json
import os
import signal
import socket
import subprocess
import sys
import time

from qcdhost.ikeshell import control
from qcdhost.paths import FIRMWARE_DIR

# The console scripts beside this Python (run as [sys.executable, script]).
BIN = os.path.dirname(sys.executable)
QCD_PEER = os.path.join(BIN, "qcd-peer")
VBOARD = os.path.join(BIN, "vboard")
EXAMPLE = os.path.join(FIRMWARE_DIR, "qcd.json.example")

PSK = "a-long-pre-shared-key"
# A quick retransmission so a test does not wait 4 s for the first one.
QUICK_RETRANSMIT = {"timeout_s": 0.5, "base": 1.5, "tries": 5}
# The tunnel addresses of gateway and device where a test or benchmark sends
# through the tunnel (inside ts_local / ts_peer of the configurations below).
GW_INNER = "10.1.0.1"
DEV_INNER = "10.2.0.5"


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def gateway_config(**changes):
    """A gateway on loopback: responder, QCD taker, no liveness checks,
    ephemeral ports (docs/config.md); `changes` replace keys."""
    cfg = {
        "role": "responder",
        "local": {"addr": "127.0.0.1", "port": 0, "natt_port": 0},
        "psk": PSK,
        "id_local": "gw.example",
        "id_peer": "dev.example",
        "ts_local": ["10.1.0.0/16"],
        "ts_peer": ["10.2.0.0/24"],
        "dpd_s": 0,
        "qcd": {"role": "taker"},
    }
    cfg.update(changes)
    return cfg


def device_config(gw_ports, gw_addr="127.0.0.1", **changes):
    """A device on loopback (initiator, behind a forced NAT, no liveness
    checks) talking to a gateway_config() gateway at gw_addr, gw_ports (IKE,
    NAT-T); its own ports are ephemeral unless `changes` give "local";
    `changes` replace keys (a "qcd" maker section, "tunnel", ...)."""
    cfg = {
        "role": "initiator",
        "local": {"addr": "127.0.0.1", "port": 0, "natt_port": 0},
        "peer": {"addr": gw_addr, "port": gw_ports[0], "natt_port": gw_ports[1]},
        "psk": PSK,
        "id_local": "dev.example",
        "id_peer": "gw.example",
        "ts_local": ["10.2.0.0/24"],
        "ts_peer": ["10.1.0.0/16"],
        "nat_t": "force",
        "dpd_s": 0,
    }
    cfg.update(changes)
    return cfg


def app_config(gw_ports, dev_ports=None, **changes):
    """The firmware app's configuration (firmware/qcd.json.example) for a
    device on loopback talking to a gateway on gw_ports, behind a forced
    NAT, without liveness checks; `changes` replace keys."""
    with open(EXAMPLE) as f:
        cfg = json.load(f)
    if dev_ports is None:
        dev_ports = (free_port(), free_port())
    cfg.update(
        {
            "device": {"watchdog_s": 30, "partition": "qcd"},
            "local": {"addr": "127.0.0.1", "port": dev_ports[0], "natt_port": dev_ports[1]},
            "peer": {"addr": "127.0.0.1", "port": gw_ports[0], "natt_port": gw_ports[1]},
            "psk": PSK,
            "nat_t": "force",
            "dpd_s": 0,
        }
    )
    cfg.update(changes)
    return cfg


class Peer:
    def __init__(self, directory, name, config, prefix=(), pcap=True, args=()):
        self.dir = directory
        self.name = name
        self.config = dict(config)
        self.prefix = list(prefix)  # e.g. nsenter into a network namespace
        self.want_pcap = pcap
        self.args = list(args)  # more `qcd-peer run` options, e.g. ["--echo", "7"]
        self.proc = None
        self.ctl_path = os.path.join(directory, name + ".ctl")
        self.log_path = os.path.join(directory, name + ".log")
        self.pcap_path = os.path.join(directory, name + ".pcap")
        self.runs = 0

    def start(self, wait=True, **changes):
        self.config.update(changes)
        self.runs += 1
        cfg = os.path.join(self.dir, "%s.%d.json" % (self.name, self.runs))
        with open(cfg, "w") as f:
            json.dump(self.config, f)
        if os.path.exists(self.ctl_path):
            os.unlink(self.ctl_path)
        cmd = self.prefix + [sys.executable, QCD_PEER, "run", cfg, "--control", self.ctl_path]
        if self.want_pcap:
            cmd += ["--pcap", "%s.%d" % (self.pcap_path, self.runs)]
        cmd += self.args
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            self.wait(lambda st: True, what="control socket")
        return self

    def ctl(self, command, timeout=20.0):
        return control(self.ctl_path, command, timeout=timeout)

    def status(self):
        return self.ctl("status")

    def wait(self, pred, timeout=60.0, what="condition"):
        """Poll status until pred(status) is true; generous timeouts, since
        the machine is shared and loaded."""
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError("%s exited (%s) waiting for %s:\n%s" % (self.name, self.proc.returncode, what, self.log()[-3000:]))
            if os.path.exists(self.ctl_path):
                try:
                    last = self.status()
                    if pred(last):
                        return last
                except (OSError, ValueError):
                    pass
            time.sleep(0.05)
        raise AssertionError("%s: timed out waiting for %s; last status %s\n%s" % (self.name, what, last, self.log()[-3000:]))

    def wait_log(self, text, timeout=60.0, start=0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            log = self.log()
            if text in log[start:]:
                return log
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("%s: %r not in log:\n%s" % (self.name, text, self.log()[-3000:]))

    def up_sas(self):
        st = self.status()
        return [s for s in st["ike_sas"] if s["state"] in ("ESTABLISHED", "REKEYING")]

    def ports(self):
        return self.status()["ports"]

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def kill(self):
        """A power cut: SIGKILL, no Delete, no flush."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout=15.0):
        """A clean stop: SIGTERM, which sends Deletes first."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode if self.proc else None


def free_local():
    """A "local" section on loopback with two free ports, for a device that
    binds its sockets itself (ike.aio, a virtual board)."""
    return {"addr": "127.0.0.1", "port": free_port(), "natt_port": free_port()}


def echo_gateway(directory, pcap=True, **changes):
    """A gateway_config() gateway, started, with its UDP echo service on
    tunnel port 7 (`qcd-peer run --echo 7`) at the tunnel address GW_INNER
    unless `changes` give "tunnel"."""
    cfg = gateway_config(tunnel={"inner_addr": GW_INNER})
    cfg.update(changes)
    return Peer(directory, "gw", cfg, pcap=pcap, args=["--echo", "7"]).start()


def one_up(st):
    return len([s for s in st["ike_sas"] if s["state"] in ("ESTABLISHED", "REKEYING") and s["children"]]) == 1


class HeadlessBoard:
    """`vboard --headless`: the board is the started process itself
    (vboard execs node), its console is a file. kill() is a power
    cut; start() again on the same directory is the power coming back."""

    def __init__(self, state_dir, extra=("--net",)):
        self.dir = str(state_dir)
        self.extra = list(extra)
        self.console = os.path.join(self.dir, "console.log")
        self.proc = None
        self.mark = 0  # where this run's output starts in the console file

    def start(self, app=None):
        self.mark = len(self.output(whole=True))
        cmd = [sys.executable, VBOARD, "--dir", self.dir, "--headless"] + self.extra
        if app:
            cmd += ["--app", str(app)]
        with open(self.console, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def output(self, whole=False):
        try:
            with open(self.console, errors="replace") as f:
                text = f.read()
        except OSError:
            return ""
        return text if whole else text[self.mark :]

    def wait_output(self, text, timeout=120):
        """This run's console once it holds `text` (generous timeout: the
        machine is shared)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            out = self.output()
            if text in out:
                return out
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("virtual board: %r not in its console:\n%s" % (text, self.output()[-4000:]))

    def wait(self, timeout=120):
        return self.proc.wait(timeout)

    def kill(self):
        """A power cut: SIGKILL to the board process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

# Helpers for lib/ike tests, CPython and MicroPython alike: a deterministic
# random source, the crypto shims the WebAssembly port needs, configurations
# for a device and a gateway, and Pair: two sans-I/O engines joined by an
# in-memory network with a simulated clock.
import hashlib

from ike import config, crypto
from ike.config import Config
from ike.engine import Engine

PSK = "a-long-pre-shared-key"
DEV_ADDR = "192.0.2.2"
GW_ADDR = "192.0.2.1"


def install_crypto():
    """On the WebAssembly port, complete lib/ike's crypto adapter with the
    jscrypto/jsrandom modules host/qcdhost/emu/wasm/run.mjs registers. Returns the
    primitives still missing (empty when the engine can run)."""
    missing = crypto.available()
    if not missing:
        return []
    try:
        import jscrypto
        import jsrandom
    except ImportError:
        return missing

    def aes(key, iv, data, encrypt):
        return bytes.fromhex(jscrypto.aes_cbc(bytes(key).hex(), bytes(iv).hex(), bytes(data).hex(), encrypt))

    def sha1(data):
        return bytes.fromhex(jscrypto.sha1(bytes(data).hex()))

    def rnd(n):
        return bytes(jsrandom.bytes(n))

    crypto.install(aes_cbc=aes, sha1=sha1, random=rnd)
    return crypto.available()


class DetRng:
    """Deterministic bytes (SHA-256 in counter mode): tests replay exactly."""

    def __init__(self, seed):
        self.seed = seed
        self.n = 0

    def __call__(self, k):
        out = b""
        while len(out) < k:
            out += hashlib.sha256(b"%d/%d" % (self.seed, self.n)).digest()
            self.n += 1
        return out[:k]


def dev_config(**kw):
    d = {
        "role": "initiator",
        "local": {"addr": DEV_ADDR, "port": 500, "natt_port": 4500},
        "peer": {"addr": GW_ADDR, "port": 500, "natt_port": 4500},
        "psk": PSK,
        "id_local": "dev.example",
        "id_peer": "gw.example",
        "ts_local": ["10.2.0.0/24"],
        "ts_peer": ["10.1.0.0/16"],
        "dpd_s": 0,
        "start_delay_s": None,
    }
    d.update(kw)
    return d


def gw_config(**kw):
    d = {
        "role": "responder",
        "local": {"addr": GW_ADDR, "port": 500, "natt_port": 4500},
        "psk": PSK,
        "id_local": "gw.example",
        "id_peer": "dev.example",
        "ts_local": ["10.1.0.0/16"],
        "ts_peer": ["10.2.0.0/24"],
        "dpd_s": 0,
    }
    d.update(kw)
    return d


class Pair:
    """Device (initiator) and gateway (responder) engines on a simulated
    network. pump() delivers datagrams until none is left; `drop` is a
    callable(datagram, from_name) -> True to lose it; with record=True
    (the default) every datagram is recorded in `wire` as (from_name,
    data, dst, natt) and every log line in `logs`. The portable tests that
    read neither pass record=False: on a board's heap a handshake's
    datagrams and log lines are kilobytes kept for nothing.

    Like the device firmware, a Pair unloads ike.config_check once both
    Configs are made (config.forget_checks): it is the largest module of
    lib/ike and only a Config needs it."""

    def __init__(self, dev=None, gw=None, dev_hook=None, gw_hook=None, seed=1, record=True):
        self.record = record
        self.logs = []
        self.now = 0
        dev_cfg, gw_cfg = Config(dev or dev_config()), Config(gw or gw_config())
        config.forget_checks()
        self.dev = Engine(dev_cfg, dev_hook, DetRng(seed), self._logger("dev"))
        self.gw = Engine(gw_cfg, gw_hook, DetRng(seed + 1000), self._logger("gw"))
        self.addr = {"dev": DEV_ADDR, "gw": GW_ADDR}
        self.drop = None
        self.wire = []
        self.events = {"dev": [], "gw": []}

    def _logger(self, name):
        def log(line):
            if self.record:
                self.logs.append(name + " " + line)

        return log

    def engine(self, name):
        return self.dev if name == "dev" else self.gw

    def pump(self, rounds=50):
        for _ in range(rounds):
            moved = False
            for name, other in (("dev", "gw"), ("gw", "dev")):
                src = self.engine(name)
                dst = self.engine(other)
                self.events[name] += src.take_events()
                for data, to, natt in src.take_datagrams():
                    if self.record:
                        self.wire.append((name, data, to, natt))
                    if self.drop is not None and self.drop(data, name):
                        continue
                    moved = True
                    port = 4500 if natt else 500
                    dst.receive(data, (self.addr[name], port), natt, self.now)
            if not moved:
                break
        for name in ("dev", "gw"):
            self.events[name] += self.engine(name).take_events()

    def advance(self, ms):
        """Let simulated time pass in small steps, running both engines' timers."""
        end = self.now + ms
        while self.now < end:
            due = [d for d in (self.dev.next_due(), self.gw.next_due()) if d is not None and d > self.now]
            step = min(due) if due else end
            self.now = min(step, end)
            self.dev.tick(self.now)
            self.gw.tick(self.now)
            self.pump()

    def up(self):
        self.dev.initiate(self.now)
        self.pump()
        return self.sa("dev"), self.sa("gw")

    def sa(self, name):
        """The newest IKE SA of `name` that is up, or None."""
        best = None
        for s in self.engine(name).sas.values():
            if s.up() and (best is None or s.idx > best.idx):
                best = s
        return best

    def names(self, name):
        return [e[0] for e in self.events[name]]

# What the in-memory benchmarks of lib/ike share (ike_bench, tunnel_bench,
# halfopen_bench), unchanged on CPython and on MicroPython: a device and a
# gateway configuration on documentation addresses (RFC 5737), the
# WebAssembly port's crypto bridge, heap readings, `RESULT` lines, and Pair:
# the two engines joined in memory, no sockets, each engine call timed.
#
# On MicroPython run.mjs copies it in beside the script's imports
# (`--path bench/engine_pair.py:/lib/engine_pair.py`); on CPython it is the
# script's neighbour. It imports lib/ike only when called, so that the
# benchmarks' "heap after import" figures stay theirs.
import gc
import sys
import time

MICRO = sys.implementation.name == "micropython"
PSK = "a-long-pre-shared-key"
DEV_ADDR = "192.0.2.2"
GW_ADDR = "192.0.2.1"


def dev_config(**kw):
    """The device: initiator, starts when told (initiate()), no liveness
    checks; `kw` replace keys."""
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
    """The gateway: responder, no liveness checks; `kw` replace keys."""
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


def result(name, value):
    print("RESULT %s %s" % (name, value))


def install_crypto():
    """The WebAssembly port lacks cryptolib, sha1 and urandom: Node's crypto
    through the jscrypto/jsrandom modules host/qcdhost/emu/wasm/run.mjs
    registers (hex strings across the JS proxy)."""
    from ike import crypto

    if not crypto.available():
        return
    import jscrypto
    import jsrandom

    crypto.install(
        aes_cbc=lambda k, iv, d, e: bytes.fromhex(jscrypto.aes_cbc(bytes(k).hex(), bytes(iv).hex(), bytes(d).hex(), e)),
        sha1=lambda d: bytes.fromhex(jscrypto.sha1(bytes(d).hex())),
        random=lambda n: bytes(jsrandom.bytes(n)),
    )


def heap():
    """Bytes in use after a collection: gc.mem_alloc() on MicroPython,
    tracemalloc's current traced bytes on CPython (started by the caller)."""
    gc.collect()
    if MICRO:
        return gc.mem_alloc()
    import tracemalloc

    return tracemalloc.get_traced_memory()[0]


if MICRO:

    def clock_us():
        return time.ticks_us()

    def since_us(t0):
        return time.ticks_diff(time.ticks_us(), t0)

else:

    def clock_us():
        return time.perf_counter()

    def since_us(t0):
        return (time.perf_counter() - t0) * 1e6


class Pair:
    """Device and gateway engines (dev_config() and gw_config() unless
    given); pump() delivers datagrams both ways until none is left, timing
    each engine call: `longest` holds each side's longest, in µs."""

    def __init__(self, dev=None, gw=None):
        from ike.config import Config
        from ike.engine import Engine

        self.dev = Engine(Config(dev or dev_config()))
        self.gw = Engine(Config(gw or gw_config()))
        self.longest = {"device": 0, "gateway": 0}

    def timed(self, what, f, *a):
        t0 = clock_us()
        r = f(*a)
        d = since_us(t0)
        if d > self.longest[what]:
            self.longest[what] = d
        return r

    def pump(self, rounds=20):
        for _ in range(rounds):
            moved = False
            for src, dst, name, addr in ((self.dev, self.gw, "gateway", DEV_ADDR), (self.gw, self.dev, "device", GW_ADDR)):
                src.take_events()
                for data, _to, natt in src.take_datagrams():
                    moved = True
                    self.timed(name, dst.receive, data, (addr, 4500 if natt else 500), natt, 0)
            if not moved:
                return

    def up(self):
        """The device initiates and the pair pumps: one IKE SA and one Child
        SA on each side (RuntimeError otherwise)."""
        self.timed("device", self.dev.initiate, 0)
        self.pump()
        if len(self.dev.sas) != 1 or len(self.gw.sas) != 1:
            raise RuntimeError("handshake failed")
        return self


def run_steps(steps, script_globals, trace=True):
    """Run a benchmark's steps. On the WebAssembly port each one is a step
    of run.mjs's own (`_mpwasm_steps`, in the script's globals): the port
    collects garbage only at the top level, between steps. Elsewhere they
    run in a row, with tracemalloc started first for heap() when `trace`
    (it slows everything: not for timings)."""
    if MICRO and "_mpwasm_steps" in script_globals:
        script_globals["_mpwasm_steps"].extend(steps)
        return
    if trace and not MICRO:
        import tracemalloc

        tracemalloc.start()
    for s in steps:
        s()

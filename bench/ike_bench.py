# Handshake cost of lib/ike, unchanged on CPython and on MicroPython: the
# MODP-2048 exponentiations, the key derivation, a whole IKE_SA_INIT +
# IKE_AUTH between two in-memory engines, a liveness round trip, and (on
# MicroPython) heap. Prints `RESULT name value` lines for bench/section_ike.py.
#
#   python3 bench/ike_bench.py                          (qcd installed: make venv)
#   node host/qcdhost/emu/wasm/run.mjs --path lib:/lib bench/ike_bench.py
import gc
import sys

try:
    from time import ticks_diff, ticks_us

    def elapsed_ms(t0):
        return ticks_diff(ticks_us(), t0) / 1000.0

    clock = ticks_us
except ImportError:
    from time import perf_counter

    def clock():
        return perf_counter()

    def elapsed_ms(t0):
        return (perf_counter() - t0) * 1000.0


MICRO = sys.implementation.name == "micropython"
ROUNDS = 3 if MICRO else 5
HEAP = {}


def result(name, value):
    print("RESULT %s %s" % (name, value))


def install_crypto():
    # The WebAssembly port lacks cryptolib, sha1 and urandom: Node's crypto
    # through the jscrypto/jsrandom modules host/qcdhost/emu/wasm/run.mjs registers.
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


def best(fn, rounds=ROUNDS, reps=1):
    """Best of `rounds` (the machine is shared) of `reps` calls, per call.
    Repetitions give the WebAssembly port's millisecond ticks some
    resolution."""
    b = None
    for _ in range(rounds):
        t0 = clock()
        for _ in range(reps):
            fn()
        dt = elapsed_ms(t0) / reps
        if b is None or dt < b:
            b = dt
    return b


CFG_DEV = {
    "role": "initiator",
    "local": {"addr": "192.0.2.2", "port": 500, "natt_port": 4500},
    "peer": {"addr": "192.0.2.1", "port": 500, "natt_port": 4500},
    "psk": "a-long-pre-shared-key",
    "id_local": "dev.example",
    "id_peer": "gw.example",
    "ts_local": ["10.2.0.0/24"],
    "ts_peer": ["10.1.0.0/16"],
    "dpd_s": 0,
    "start_delay_s": None,
}
CFG_GW = {
    "role": "responder",
    "local": {"addr": "192.0.2.1", "port": 500, "natt_port": 4500},
    "psk": "a-long-pre-shared-key",
    "id_local": "gw.example",
    "id_peer": "dev.example",
    "ts_local": ["10.1.0.0/16"],
    "ts_peer": ["10.2.0.0/24"],
    "dpd_s": 0,
}


def pump(a, b):
    moved = True
    while moved:
        moved = False
        for src, dst, addr in ((a, b, "192.0.2.2"), (b, a, "192.0.2.1")):
            for data, _to, natt in src.take_datagrams():
                moved = True
                dst.receive(data, (addr, 4500 if natt else 500), natt, 0)
            src.take_events()


def engines():
    from ike.config import Config
    from ike.engine import Engine

    return Engine(Config(CFG_DEV)), Engine(Config(CFG_GW))


def speed():
    from ike import dh, keymat
    from ike.const import MODP_2048

    kp = dh.KeyPair(MODP_2048)
    other = dh.KeyPair(MODP_2048)
    result("dh_keygen_ms", "%.2f" % best(lambda: dh.KeyPair(MODP_2048), reps=10))
    result("dh_shared_ms", "%.2f" % best(lambda: kp.shared(other.public), reps=10))
    g_ir = kp.shared(other.public)
    ni, nr, si, sr = b"\x01" * 32, b"\x02" * 32, b"\x03" * 8, b"\x04" * 8
    m1 = b"M" * 432

    def kdf():
        k = keymat.IkeKeys(keymat.skeyseed(ni, nr, g_ir), ni, nr, si, sr)
        keymat.child_keys(k.sk_d, ni, nr)
        keymat.psk_auth(b"a-long-pre-shared-key", m1, nr, k.sk_pi, b"\x02\x00\x00\x00dev.example")
        keymat.psk_auth(b"a-long-pre-shared-key", m1, ni, k.sk_pr, b"\x02\x00\x00\x00gw.example")

    result("kdf_ms", "%.3f" % best(kdf, reps=10 if MICRO else 200))

    def handshake():
        a, b = engines()
        a.initiate(0)
        pump(a, b)
        if len(a.sas) != 1 or len(b.sas) != 1:
            raise RuntimeError("handshake failed")

    result("handshake_ms", "%.2f" % best(handshake, reps=3))
    a, b = engines()
    a.initiate(0)
    pump(a, b)
    n = 20 if MICRO else 200

    def liveness():
        for _ in range(n):
            a.liveness(0)
            pump(a, b)

    result("liveness_ms", "%.3f" % (best(liveness) / n))


def heap_mark(name):
    def step():
        gc.collect()
        HEAP[name] = gc.mem_alloc()

    return step


def do_import():
    import ike.engine  # noqa: F401
    import qcd.hook  # noqa: F401

    gc.collect()


def make_sas():
    a, b = engines()
    a.initiate(0)
    pump(a, b)
    HEAP["engines"] = (a, b)
    gc.collect()


def heap_report():
    result("heap_import_bytes", HEAP["imported"] - HEAP["start"])
    # Two engines, one IKE SA and one Child SA each, in one heap: per side.
    result("heap_per_engine_with_sa_bytes", (HEAP["sas"] - HEAP["imported"]) // 2)


if MICRO:
    steps = [heap_mark("start"), do_import, heap_mark("imported"), install_crypto, make_sas, heap_mark("sas"), heap_report, speed]
    try:
        _mpwasm_steps.extend(steps)  # noqa: F821 (defined by host/qcdhost/emu/wasm/run.mjs)
    except NameError:
        for s in steps:
            s()
else:
    install_crypto()
    speed()

# D-H cost of one side of an IKE_SA_INIT: a fresh key pair and the shared
# secret from the peer's public value, for group 31 (X25519) and group 14
# (MODP-2048), side by side. Runs unchanged on CPython and MicroPython; prints
# `RESULT name value` lines (bench/run.py collects them).
#
#   python3 bench/dh_bench.py                   (CPython, qcd installed: make venv)
#   node host/qcdhost/emu/wasm/run.mjs --path lib:/lib bench/dh_bench.py
#
# "engine" is what ike.dh runs on the platform: on CPython X25519 through
# `cryptography` (OpenSSL), on MicroPython the hand-written ladder
# (ike.x25519); "ladder" is that ladder on either platform.
import hashlib
import sys

try:
    from time import ticks_diff, ticks_us

    def elapsed_ms(t0):
        return ticks_diff(ticks_us(), t0) / 1000

    clock = ticks_us
except ImportError:
    from time import perf_counter as clock

    def elapsed_ms(t0):
        return (clock() - t0) * 1000


from ike import crypto, dh, x25519
from ike.const import CURVE25519, MODP_2048

MICRO = sys.implementation.name == "micropython"
ROUNDS = 5
_n = [0]


def rng(k):
    # Deterministic and different every call (the WebAssembly port has no
    # os.urandom); the cost does not depend on where the octets come from.
    out = b""
    while len(out) < k:
        _n[0] += 1
        out += hashlib.sha256(b"dh bench %d" % _n[0]).digest()
    return out[:k]


def result(name, value):
    print("RESULT %s %s" % (name, value))


def side(group, peer):
    kp = dh.KeyPair(group, rng)
    if kp.shared(peer) is None:
        raise RuntimeError("no shared secret")


def ladder_side(peer):
    k = rng(32)
    x25519.public_key(k)
    if x25519.x25519(k, peer) == bytes(32):
        raise RuntimeError("no shared secret")


def pair_only():
    dh.KeyPair(CURVE25519, rng)


def per_call_ms(fn, n):
    t0 = clock()
    for _ in range(n):
        fn()
    return elapsed_ms(t0) / n


def main():
    peer14 = dh.KeyPair(MODP_2048, rng).public
    peer31 = dh.KeyPair(CURVE25519, rng).public
    n14, n31 = (2, 10) if MICRO else (20, 200)
    best = {"modp": 1e9, "x25519": 1e9, "ladder": 1e9, "pair": 1e9, "shared": 1e9}
    mine = dh.KeyPair(CURVE25519, rng)
    what = (
        ("modp", lambda: side(MODP_2048, peer14), n14),
        ("x25519", lambda: side(CURVE25519, peer31), n31),
        ("ladder", lambda: ladder_side(peer31), n14 if not MICRO else n31),
        ("pair", pair_only, n31),
        ("shared", lambda: mine.shared(peer31), n31),
    )

    def measure(name, fn, n):
        def step():
            best[name] = min(best[name], per_call_ms(fn, n))

        return step

    def report():
        result("modp2048_ms", "%.3f" % best["modp"])
        result("x25519_ms", "%.3f" % best["x25519"])
        result("ladder_ms", "%.3f" % best["ladder"])
        result("x25519_pair_ms", "%.3f" % best["pair"])
        result("x25519_shared_ms", "%.3f" % best["shared"])
        result("x25519_backend", "ladder" if MICRO or crypto._x25519 is None else "cryptography")
        result("modp_over_x25519_x", "%.1f" % (best["modp"] / best["x25519"]))
        result("modp_over_ladder_x", "%.1f" % (best["modp"] / best["ladder"]))
        result("modp_over_shared_x", "%.1f" % (best["modp"] / best["shared"]))

    # Alternating, best of ROUNDS each: the machine is shared. Under
    # host/qcdhost/emu/wasm/run.mjs each measurement is a top-level step:
    # that port collects garbage only between steps (its heap grows inside
    # one, about 1.5 MB an X25519 side), so that without them the later
    # measurements ran in a heap grown by tens of MB; a device collects
    # during the call (the C3 stand-in and the unix port count that).
    steps = [measure(*w) for _ in range(ROUNDS) for w in what] + [report]
    try:
        _mpwasm_steps.extend(steps)  # noqa: F821 (run.mjs defines it)
    except NameError:
        for s in steps:
            s()


main()

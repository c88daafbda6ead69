# Handshake cost of lib/ike, unchanged on CPython and on MicroPython: the
# MODP-2048 exponentiations, the key derivation, a whole IKE_SA_INIT +
# IKE_AUTH between two in-memory engines, a liveness round trip, and (on
# MicroPython) heap. Prints `RESULT name value` lines for bench/section_ike.py.
#
#   python3 bench/ike_bench.py                          (qcd installed: make venv)
#   node host/qcdhost/emu/wasm/run.mjs --path lib:/lib --path bench/engine_pair.py:/lib/engine_pair.py bench/ike_bench.py
import gc

from engine_pair import MICRO, PSK, Pair, clock_us, install_crypto, result, run_steps, since_us

ROUNDS = 3 if MICRO else 5
HEAP = {}


def elapsed_ms(t0):
    return since_us(t0) / 1000.0


def best(fn, rounds=ROUNDS, reps=1):
    """Best of `rounds` (the machine is shared) of `reps` calls, per call.
    Repetitions give the WebAssembly port's millisecond ticks some
    resolution."""
    b = None
    for _ in range(rounds):
        t0 = clock_us()
        for _ in range(reps):
            fn()
        dt = elapsed_ms(t0) / reps
        if b is None or dt < b:
            b = dt
    return b


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
        keymat.psk_auth(PSK.encode(), m1, nr, k.sk_pi, b"\x02\x00\x00\x00dev.example")
        keymat.psk_auth(PSK.encode(), m1, ni, k.sk_pr, b"\x02\x00\x00\x00gw.example")

    result("kdf_ms", "%.3f" % best(kdf, reps=10 if MICRO else 200))

    def handshake():
        Pair().up()

    result("handshake_ms", "%.2f" % best(handshake, reps=3))
    p = Pair().up()
    n = 20 if MICRO else 200

    def liveness():
        for _ in range(n):
            p.dev.liveness(0)
            p.pump()

    result("liveness_ms", "%.3f" % (best(liveness) / n))

    # One protected message built and opened (HDR, SK{} of an empty
    # INFORMATIONAL: a liveness check), side by side with the integrity key
    # as bytes (HMAC pads built for every MAC) and as one crypto.hmac_key
    # kept for the SA, as the engine does (keymat.IkeKeys).
    from ike import crypto, message

    ek, ik, iv = bytes(32), bytes(range(32)), bytes(16)

    def sk(integ):
        def once():
            m = message.parse(message.build_sk(b"I" * 8, b"R" * 8, 37, 0x08, 1, [], ek, integ, iv))
            message.decrypt_sk(m, ek, integ)

        return once

    keys = (("sk_ms", sk(ik)), ("sk_key_ms", sk(crypto.hmac_key(ik))))
    got = {}
    for _ in range(ROUNDS):  # alternating, so both see the same machine
        for name, fn in keys:
            t = best(fn, rounds=1, reps=1000 if MICRO else 5000)
            got[name] = min(got.get(name, t), t)
    for name, _fn in keys:
        result(name, "%.4f" % got[name])


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
    HEAP["engines"] = Pair().up()
    gc.collect()


def heap_report():
    result("heap_import_bytes", HEAP["imported"] - HEAP["start"])
    # Two engines, one IKE SA and one Child SA each, in one heap: per side.
    result("heap_per_engine_with_sa_bytes", (HEAP["sas"] - HEAP["imported"]) // 2)


if MICRO:
    run_steps([heap_mark("start"), do_import, heap_mark("imported"), install_crypto, make_sas, heap_mark("sas"), heap_report, speed], globals())
else:
    run_steps([install_crypto, speed], globals(), trace=False)

# Runs on MicroPython's bare-metal RISC-V port (ports/qemu, BOARD=VIRT_RV32)
# under QEMU with `-icount shift=0`, the device set frozen in
# (bench/c3_manifest.py); bench/c3_bench.py sends it over the raw REPL.
# Counts the instructions the device code executes, for the ESP32-C3 row of
# issue 10 (one side of a handshake; one QCD token). Prints `RESULT name
# value` lines.
#
# The counter is the RISC-V `instret` CSR (with `cycle`, QEMU derives it
# from its instruction counter when -icount is on; without -icount it is the
# host's clock): read by the inline assembler below, checked against a loop
# of known length (calibration) before anything else is measured.
import gc
import hashlib
import sys

import micropython

# -- the instruction counter ------------------------------------------------
# (inside @micropython.asm_rv32 functions, label, csrrs, a0, zero ... are the
# inline assembler's names, not Python's)


@micropython.asm_rv32
def _instret(a0):
    # a0: bytearray(8) <- the 64-bit instret (instreth read twice so a carry
    # between the two halves is not missed)
    label(again)
    csrrs(a1, zero, 0xC82)  # instreth
    csrrs(a2, zero, 0xC02)  # instret
    csrrs(a3, zero, 0xC82)
    bne(a1, a3, again)
    sw(a2, 0(a0))
    sw(a1, 4(a0))


_buf = bytearray(8)
READ = [0]  # instructions one count() adds to a span it ends


def count():
    _instret(_buf)
    return int.from_bytes(_buf, "little")


@micropython.asm_rv32
def _spin(a0):
    # a0 iterations of two instructions (addi, bne)
    label(loop)
    addi(a0, a0, -1)
    bne(a0, zero, loop)


def result(name, value):
    print("RESULT %s %s" % (name, value))


def calibrate():
    """instret against a loop of known length: the counter must count
    instructions, two per iteration, whatever the host is doing."""
    c = [count() - count() for _ in range(3)]
    READ[0] = -max(c)
    result("counter_read_instructions", READ[0])
    for n in (100000, 1000000, 10000000):
        best = None
        for _ in range(3):
            t0 = count()
            _spin(n)
            d = count() - t0
            best = d if best is None or d < best else best
        # the call and the two reads cost a few hundred instructions
        result("calib_%d" % n, "%d %.6f" % (best, best / (2.0 * n)))
    # The guest's virtual clock (mtime at 10 MHz, time.ticks_us) runs at one
    # nanosecond per instruction with shift=0.
    import time

    t0, u0 = count(), time.ticks_us()
    _spin(5000000)
    d, du = count() - t0, time.ticks_diff(time.ticks_us(), u0)
    result("calib_ticks_us_per_kinstr", "%.4f" % (du / (d / 1000.0)))


# -- attribution: where a handshake's instructions go -------------------------

SIDE = [None]  # "i" (initiator) or "r" (responder): whose engine is running
AHEAD = []  # (instructions, longest slice, slices) of each prepare_ahead()
CAT = [None]  # the outermost wrapped category now running
ACC = {}  # (side, category) -> instructions
CALLS = [0]


def wrap(cat, fn):
    """fn, charging its instructions to `cat` unless a wrapped call of
    another category is already running (then the outer one keeps them:
    prf+ is keymat even though it runs HMAC)."""

    def w(*a):
        if CAT[0] is not None or SIDE[0] is None:
            return fn(*a)
        CAT[0] = cat
        CALLS[0] += 1
        t0 = count()
        try:
            return fn(*a)
        finally:
            key = (SIDE[0], cat)
            ACC[key] = ACC.get(key, 0) + count() - t0 - READ[0]
            CAT[0] = None

    return w


def instrument():
    from ike import crypto, dh, keymat
    from ikebase import hmac256

    dh.KeyPair.__init__ = wrap("dh_pair", dh.KeyPair.__init__)
    dh.KeyPair.shared = wrap("dh_shared", dh.KeyPair.shared)
    for n in ("prf", "prf_plus", "skeyseed", "skeyseed_rekey", "child_keys", "psk_auth"):
        setattr(keymat, n, wrap("keymat", getattr(keymat, n)))
    keymat.IkeKeys.__init__ = wrap("keymat", keymat.IkeKeys.__init__)
    # crypto.hmac_key is the class ikebase.hmac256.HmacKey (callers test
    # isinstance against it): its methods are wrapped instead
    for n in ("aes_cbc_encrypt", "aes_cbc_decrypt", "hmac_sha256", "ct_equal"):
        setattr(crypto, n, wrap("enc_integ", getattr(crypto, n)))
    hmac256.HmacKey.digest = wrap("enc_integ", hmac256.HmacKey.digest)
    hmac256.HmacKey.__init__ = wrap("enc_integ", hmac256.HmacKey.__init__)
    crypto.install(random=wrap("rng", _rng))


# -- the engine pair ----------------------------------------------------------

_n = [0]


def _rng(k):
    # Stands in for os.urandom, which this port lacks (an ESP32 reads its
    # hardware RNG in C): SHA-256 of a counter, deterministic, so every run
    # executes the same instructions. Charged to its own category.
    out = b""
    while len(out) < k:
        _n[0] += 1
        out += hashlib.sha256(b"c3 bench %d" % _n[0]).digest()
    return out[:k]


def counted_pair(groups):
    """bench/engine_pair.py's Pair (frozen in), counting each engine call's
    instructions for its side instead of timing it."""
    import engine_pair

    class CountedPair(engine_pair.Pair):
        def timed(self, what, f, *a):
            side = "i" if what == "device" else "r"
            SIDE[0] = side
            t0 = count()
            try:
                return f(*a)
            finally:
                self.tot[side] += count() - t0 - READ[0]
                SIDE[0] = None

    kw = {} if groups is None else {"dh_groups": groups}
    p = CountedPair(engine_pair.dev_config(**kw), engine_pair.gw_config(**kw))
    p.tot = {"i": 0, "r": 0}
    return p


def prepare_ahead(groups):
    """What the device loop does when idle (ike.crypto.prepare, one slice per
    call) until both engines of the pair have a key pair ready (keep=2: one
    process, one rng): (instructions in all, the longest slice, slices)."""
    from ike import crypto

    total = longest = slices = 0
    while True:
        t0 = count()
        more = crypto.prepare(None, groups, 2)
        d = count() - t0 - READ[0]
        if not more:
            return total, longest, slices
        total += d
        slices += 1
        longest = d if d > longest else longest


def handshake(groups, seed, ahead=False):
    """IKE_SA_INIT + IKE_AUTH between two in-memory engines, their random
    octets from `seed`; returns the instructions each engine executed:
    {"i": initiator, "r": responder}, and the group the SA uses. ahead: the
    key pairs made first in idle time (not counted here; AHEAD gets what
    that took), as ike.device's loop does between handshakes."""
    from ike import crypto

    _n[0] = seed * 1000
    crypto._ahead[:] = []
    p = counted_pair(groups)
    gc.collect()
    if ahead:
        AHEAD.append(prepare_ahead(p.dev.cfg.dh_groups))
        gc.collect()
    p.up()
    if not p.dev.children or not p.gw.children:
        raise RuntimeError("handshake failed: no Child SA")
    return p.tot, [s.group for s in p.dev.sas.values()][0]


def measure_handshakes(reps):
    from ike.const import CURVE25519, MODP_2048

    for name, groups in (("x25519", None), ("modp2048", [MODP_2048])):
        # the first handshake after boot imports the exchange modules the
        # engine loads on first use (frozen: no compilation)
        t, g = handshake(groups, 0)
        want = CURVE25519 if name == "x25519" else MODP_2048
        if g != want:
            raise RuntimeError("%s: the SA used group %d" % (name, g))
        result("%s_first_i" % name, t["i"])
        result("%s_first_r" % name, t["r"])
        # different keys each time: a MODP pow() costs more or less with
        # its exponent's bits. No key pair ready (what the first handshake
        # after boot meets), then each with its key pairs made ahead
        runs = [handshake(groups, seed)[0] for seed in range(1, reps + 1)]
        for side in ("i", "r"):
            xs = sorted(r[side] for r in runs)
            result("%s_%s" % (name, side), xs[len(xs) // 2])
            result("%s_%s_runs" % (name, side), ",".join(str(x) for x in xs))
            result("%s_%s_seed1" % (name, side), runs[0][side])
        AHEAD[:] = []
        runs = [handshake(groups, seed, True)[0] for seed in range(1, reps + 1)]
        for side in ("i", "r"):
            xs = sorted(r[side] for r in runs)
            result("%s_ahead_%s" % (name, side), xs[len(xs) // 2])
            result("%s_ahead_%s_runs" % (name, side), ",".join(str(x) for x in xs))
        # two pairs a handshake (one per engine)
        per_pair = sorted(a[0] // 2 for a in AHEAD)
        result("%s_ahead_pair" % name, per_pair[len(per_pair) // 2])
        result("%s_ahead_slice_max" % name, max(a[1] for a in AHEAD))
        result("%s_ahead_slices_per_pair" % name, max(a[2] for a in AHEAD) // 2)
        # the same with the collector run as firmware/qcdapp.py sets it
        # (gc.threshold: a quarter of the heap free at the start)
        for ahead, tag in ((True, "ahead_thr"), (False, "thr")):
            gc.collect()
            gc.threshold(gc.mem_free() // 4)
            try:
                t = handshake(groups, 1, ahead)[0]
            finally:
                gc.threshold(-1)
            result("%s_%s_i" % (name, tag), t["i"])
            result("%s_%s_r" % (name, tag), t["r"])
        result("%s_ahead_seed1_i" % name, runs[0]["i"])
        result("%s_ahead_seed1_r" % name, runs[0]["r"])
        # the same with the collector off, if the heap lasts: the
        # difference is what garbage collection cost in this heap
        gc.collect()
        gc.disable()
        ok = True
        try:
            t = handshake(groups, 1)[0]
        except MemoryError:  # two clauses: a tuple would need the heap
            ok = False
        except RuntimeError:
            # out of heap in the engine: it drops the datagram it could not
            # handle (counted) and the handshake does not complete
            ok = False
        finally:
            gc.enable()  # first: nothing can be allocated until then
        if not ok:
            t = {"i": None, "r": None}
        result("%s_nogc_i" % name, t["i"])
        result("%s_nogc_r" % name, t["r"])


def measure_split():
    from ike.const import MODP_2048

    instrument()
    for name, groups, ahead in (("x25519", None, False), ("modp2048", [MODP_2048], False), ("x25519_ahead", None, True)):
        ACC.clear()
        CALLS[0] = 0
        t, _g = handshake(groups, 1, ahead)  # the keys of the first measured run
        for side in ("i", "r"):
            cats = {c: ACC.get((side, c), 0) for c in ("dh_pair", "dh_shared", "keymat", "enc_integ", "rng")}
            cats["rest"] = t[side] - sum(cats.values())
            result("split_%s_%s" % (name, side), " ".join("%s=%d" % kv for kv in sorted(cats.items())) + " total=%d" % t[side])
        result("split_%s_wrapped_calls" % name, CALLS[0])


def measure_free_heap():
    """One X25519 shared secret (the ladder) with less and less of the heap
    free (a ballast of live bytearrays): its 1.3 MB of temporaries are
    collected more often, and each collection marks the live heap and
    sweeps the whole heap."""
    from ike import x25519

    k, u = hashlib.sha256(b"k").digest(), hashlib.sha256(b"u").digest()
    out = []
    for blocks in (0, 300, 400):
        ballast = [bytearray(200) for _ in range(blocks)]
        gc.collect()
        free = gc.mem_free()
        best = None
        for _ in range(2):
            gc.collect()
            t0 = count()
            x25519.x25519(k, u)
            d = count() - t0 - READ[0]
            best = d if best is None or d < best else best
        out.append("%d:%d" % (free, best))
        ballast = None
    result("x25519_by_free_heap", ",".join(out))


# -- QCD tokens ---------------------------------------------------------------


def per_call(fn, n):
    best = None
    for _ in range(3):
        t0 = count()
        for _ in range(n):
            fn()
        d = (count() - t0) / n
        best = d if best is None or d < best else best
    return best


def measure_tokens():
    from qcd import tokens

    secret = bytes(range(32))
    spi_i, spi_r = b"\x11" * 8, b"\x22" * 8
    n = 20
    # the first token of a secret builds its two padded key blocks
    firsts = []
    for i in range(1, 11):
        tokens._keys.clear()
        s = bytes((i,)) * 32
        t0 = count()
        tokens.make_token(s, spi_i, spi_r)
        firsts.append(count() - t0)
    first = min(firsts)
    tokens._keys.clear()
    tokens.make_token(secret, spi_i, spi_r)
    token = per_call(lambda: tokens.make_token(secret, spi_i, spi_r), n)
    loop = per_call(lambda: None, n)  # the lambda call and loop around it
    result("token_instructions", "%.0f" % (token - loop))
    result("token_first_instructions", "%d" % (first - READ[0]))
    try:
        import hmac
    except ImportError:
        result("hmac_instructions", "None")
        return
    msg = spi_i + spi_r
    if hmac.new(secret, msg, hashlib.sha256).digest() != tokens.make_token(secret, spi_i, spi_r):
        raise RuntimeError("token != micropython-lib hmac")
    bare = per_call(lambda: hmac.new(secret, msg, hashlib.sha256).digest(), n)
    result("hmac_instructions", "%.0f" % (bare - loop))
    result("token_over_hmac", "%.3f" % ((token - loop) / (bare - loop)))


def main():
    from ike import crypto

    crypto.install(random=_rng)  # this port has no os.urandom
    v = sys.implementation
    result("micropython", "%d.%d.%d" % v.version[:3])
    result("machine", v._machine.replace(" ", "_"))
    calibrate()
    gc.collect()
    result("heap_bytes", gc.mem_free() + gc.mem_alloc())
    result("heap_free_start", gc.mem_free())
    measure_tokens()
    measure_handshakes(3)
    measure_split()
    measure_free_heap()
    result("done", 1)


main()

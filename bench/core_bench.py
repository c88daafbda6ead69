# Core benchmarks that run unchanged on CPython and on MicroPython:
# token throughput next to a bare HMAC (the platform's hmac module:
# CPython's, micropython-lib's on MicroPython), the cost of refusing garbage, and
# (MicroPython only) heap use. Prints one `RESULT name value` line per figure;
# bench/run.py collects them from both platforms into bench/results.md.
#
#   python3 bench/core_bench.py                      (CPython, qcd installed: make venv)
#   node host/qcdhost/emu/wasm/run.mjs --path lib/qcd:/lib/qcd --path lib/ikebase:/lib/ikebase bench/core_bench.py
#
# Heap figures need a garbage collection that really runs: on the WebAssembly
# port that happens only at the top level (see host/qcdhost/emu/wasm/run.mjs), so the
# measurements are split into top-level steps there.
import gc
import hashlib
import hmac
import sys

try:
    from time import ticks_diff, ticks_us

    def elapsed_s(t0):
        return ticks_diff(ticks_us(), t0) / 1e6

    clock = ticks_us
except ImportError:
    from time import perf_counter as clock

    def elapsed_s(t0):
        return clock() - t0


MICRO = sys.implementation.name == "micropython"
N = int(sys.argv[1]) if len(sys.argv) > 1 else (10000 if MICRO else 100000)
ROUNDS = 5


def result(name, value):
    print("RESULT %s %s" % (name, value))


def rate(fn, n):
    t0 = clock()
    fn(n)
    dt = elapsed_s(t0)
    return n / dt if dt > 0 else 0.0


SECRET = hashlib.sha256(b"bench secret").digest()
SPI_I = b"\x01\x02\x03\x04\x05\x06\x07\x08"
SPI_R = b"\x11\x12\x13\x14\x15\x16\x17\x18"
HEAP = {}


def heap_mark(name):
    def step():
        gc.collect()
        HEAP[name] = gc.mem_alloc()

    return step


def import_qcd():
    # Everything a device imports to run the hook.
    import qcd.hook  # noqa: F401

    gc.collect()


def fill_taker():
    from qcd.taker import Taker

    sha = hashlib.sha256
    pairs = [(sha(b"i%d" % k).digest()[:8], sha(b"r%d" % k).digest()[:8]) for k in range(100)]
    toks = [sha(b"t%d" % k).digest() for k in range(100)]
    HEAP["taker"] = t = Taker()
    HEAP["inputs"] = (pairs, toks)
    gc.collect()


def store_tokens():
    t = HEAP["taker"]
    pairs, toks = HEAP["inputs"]
    for k in range(100):
        t.store(pairs[k][0], pairs[k][1], toks[k])
    gc.collect()


def heap_report():
    result("heap_import_bytes", HEAP["imported"] - HEAP["start"])
    result("heap_per_sa_bytes", "%.1f" % ((HEAP["filled"] - HEAP["empty"]) / 100))


def speed():
    from qcd import hook, wire
    from qcdhost.keys import MemoryKeys
    from qcd.tokens import make_token

    secret, spi_i, spi_r = SECRET, SPI_I, SPI_R
    sha = hashlib.sha256

    def bare(n):
        msg = spi_i + spi_r
        for _ in range(n):
            hmac.new(secret, msg, sha).digest()

    def tokens(n):
        for _ in range(n):
            make_token(secret, spi_i, spi_r)

    # Side by side, alternating, best of ROUNDS each: the machine is shared.
    best_bare = best_tok = 0.0
    for _ in range(ROUNDS):
        best_bare = max(best_bare, rate(bare, N))
        best_tok = max(best_tok, rate(tokens, N))
    result("hmac_per_s", "%.0f" % best_bare)
    result("tokens_per_s", "%.0f" % best_tok)
    result("token_overhead_x", "%.3f" % (best_bare / best_tok))

    # Refusing garbage: a maker's unknown-SPI entry point fed datagrams that
    # must be dropped (random bytes, an unprotected request, a response).
    h = hook.QcdHook(hook.MAKER, MemoryKeys([secret]))
    junk = [
        sha(b"junk").digest() * 3,
        wire.build(spi_i, spi_r, wire.INFORMATIONAL, wire.FLAG_I, 1, [(wire.PT_N, wire.notify_body(wire.INITIAL_CONTACT))]),
        wire.build(spi_i, spi_r, wire.INFORMATIONAL, wire.FLAG_R, 1, [(wire.PT_SK, bytes(48))]),
    ]

    def refuse(n):
        k = 0
        for i in range(n):
            if h.unknown_ike_spi(junk[i % 3], ("192.0.2.1", 500), i) is not None:
                k += 1
        if k:
            raise RuntimeError("garbage was answered")

    best = 0.0
    for _ in range(ROUNDS):
        best = max(best, rate(refuse, 4 * N))
    result("refusals_per_s", "%.0f" % best)


if MICRO:
    steps = [
        gc.collect,
        heap_mark("start"),
        import_qcd,
        heap_mark("imported"),
        fill_taker,
        heap_mark("empty"),
        store_tokens,
        heap_mark("filled"),
        heap_report,
        speed,
    ]
    try:
        _mpwasm_steps.extend(steps)  # noqa: F821 (host/qcdhost/emu/wasm/run.mjs)
    except NameError:  # a real board: its gc.collect() works inline
        for st in steps:
            st()
else:
    speed()

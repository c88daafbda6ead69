# What one X25519 ladder step costs on MicroPython, by kind of integer
# operation, on operands of the sizes ike.x25519's ladder sees (issue 10 §4:
# why the ladder is not yet 10x cheaper than MODP-2048). Prints
# `RESULT name value` lines (bench/run.py collects them), values in
# microseconds per operation; under the C3 stand-in (bench/c3_bench.py's
# QEMU firmware, whose ticks_us counts one microsecond per 1,000
# instructions) the same figures are thousands of instructions.
#
#   node host/qcdhost/emu/wasm/run.mjs --path lib:/lib bench/dh_ops.py
#   MICROPYPATH=lib micropython bench/dh_ops.py      (unix port)
#   python3 bench/dh_ops.py                          (CPython, for reference)
#
# STEP_OPS is what one step of ike.x25519._ladder does (u not 9): the sum
# of count x cost is the step's estimate, beside the measured ladder.
import gc
import sys

try:
    from time import ticks_diff, ticks_us
except ImportError:  # CPython
    from time import perf_counter

    def ticks_us():
        return int(perf_counter() * 1e6)

    def ticks_diff(a, b):
        return a - b


from ike import x25519

MICRO = sys.implementation.name == "micropython"
P = x25519.P
M = (1 << 255) - 1
R256 = (P * 7 // 11) ^ 12345  # a reduced value
SUM = R256 + (P * 5 // 13)  # a + b: under 2^257
FOLDED = (R256 << 8) ^ 77  # one fold's output: under 2^264
PRODUCT = SUM * SUM  # under 2^514
SHORT = (R256 << 23) ^ 5  # a fold of a 530-bit product: under 2^279
# the WebAssembly port's ticks_us counts milliseconds
N = 20000 if sys.platform == "webassembly" or not MICRO else 2000
ROUNDS = 5


def result(name, value):
    print("RESULT %s %s" % (name, value))


def timed(body):
    # best of ROUNDS, microseconds per call of body(n) / n
    best = None
    for _ in range(ROUNDS):
        t0 = ticks_us()
        body(N)
        t = ticks_diff(ticks_us(), t0)
        best = t if best is None or t < best else best
    return best / N


def empty(n, x=R256):
    for _ in range(n):
        y = x


def mul(n, a=SUM, b=SUM):
    for _ in range(n):
        y = a * b


def mul_folded(n, a=FOLDED, b=FOLDED):
    for _ in range(n):
        y = a * b


def fold(n, x=PRODUCT, m=M):
    for _ in range(n):
        y = (x & m) + 19 * (x >> 255)


def mod_product(n, x=PRODUCT, p=P):
    for _ in range(n):
        y = x % p


def mod_short(n, x=SHORT, p=P):
    for _ in range(n):
        y = x % p


def add(n, a=R256, b=SUM):
    for _ in range(n):
        y = a + b


def select(n, a=SUM, c=SUM >> 3, mask=-1):
    # one of the ladder's masked picks: three operations
    for _ in range(n):
        s = mask & (a ^ c)
        y = a ^ s


def bits(n, kb=bytearray(range(7, 39)), prev=0):
    # the loop's small-int work per step: read bit t, make the mask
    t = 100
    for _ in range(n):
        kt = (kb[t >> 3] >> (t & 7)) & 1
        mask = -(kt ^ prev)
        prev = kt


# (name, function, operations per ladder step)
OPS = (
    ("mul", mul, 5),
    ("mul_folded", mul_folded, 5),
    ("fold", fold, 9),
    ("mod_product", mod_product, 0),
    ("mod_short", mod_short, 4),
    ("add", add, 8),
    ("select", select, 2),
    ("bits", bits, 1),
)
costs = {}


def ops():
    base = timed(empty)
    for name, f, _count in OPS:
        gc.collect()
        costs[name] = max(0.0, timed(f) - base)
        result("op_%s" % name, "%.3f" % costs[name])


def ladder():
    k = bytes(range(1, 33))
    u = bytes(range(40, 72))
    gc.collect()
    best = None
    for _ in range(3):
        t0 = ticks_us()
        x25519.x25519(k, u)
        t = ticks_diff(ticks_us(), t0)
        best = t if best is None or t < best else best
    z = x25519._u(u)
    t0 = ticks_us()
    for _ in range(5):
        x25519._inverse(z)
    inv = ticks_diff(ticks_us(), t0) / 5
    t0 = ticks_us()
    for _ in range(5):
        pow(z, P - 2, P)
    inv_pow = ticks_diff(ticks_us(), t0) / 5
    est = sum(costs[name] * count for name, _f, count in OPS)
    result("ladder_us", "%.0f" % best)
    result("inverse_chain_us", "%.0f" % inv)
    result("inverse_pow_us", "%.0f" % inv_pow)
    result("step_measured_us", "%.2f" % ((best - inv) / 255))
    result("step_estimate_us", "%.2f" % est)


steps = [ops, gc.collect, ladder]
try:
    _mpwasm_steps.extend(steps)  # noqa: F821 (host/qcdhost/emu/wasm/run.mjs)
except NameError:  # elsewhere gc.collect() works inline
    for st in steps:
        st()

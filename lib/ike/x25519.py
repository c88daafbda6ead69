# X25519 (RFC 7748 §5) for IKEv2 D-H group 31, Curve25519 (RFC 8031).
#
#   x25519(k, u)        the X25519 function: 32-octet scalar and u-coordinate
#                       in, 32-octet u-coordinate out (little endian)
#   public_key(k)       x25519(k, 9): the public value for private k
#   public_key_slices(k, every=7)
#                       the same in slices, for idle time (ike.crypto.prepare):
#                       a generator yielding None between slices, the
#                       public value last
#
# Written by hand because MicroPython has no elliptic-curve primitive at all
# (stock ESP32 firmware: hashlib, cryptolib AES, no EC; micropython-lib has
# none either); CPython's `cryptography` X25519 is the oracle in the tests.
# Any u: RFC 7748's Montgomery ladder over Python integers, 255 steps of
# 255-bit arithmetic, then one inversion. The base point u = 9 (a public
# value, once per IKE_SA_INIT): a comb over the same curve in Edwards form
# with a 15-entry table, 64 doublings and additions, about half the
# ladder's cost, in ike.x25519_comb (its header says how), which a .mpy
# deploy may leave off to save heap: then the ladder does u = 9 too.
# bench: dh.
#
# Speed on MicroPython (its integers are mpz, 16-bit digits on 32-bit ports;
# bench/results.md has the figures): every integer operation allocates, and
# `x % p` of a 512-bit product costs about 2.5 256-bit multiplications
# (a long division), while `x % p` of a number of under 300 bits is cheap
# (two or three quotient digits). So a product is first folded with
# 2^255 = 19 (mod p), x -> (x & (2^255 - 1)) + 19 * (x >> 255), which takes
# it under 2^265, and reduced with `% p` only where it is multiplied twice
# more (the ladder's state); where it is multiplied once more (da, cb, aa,
# bb, (da - cb)^2) the fold alone is enough. Sums and differences are never
# reduced (b, d, e may be negative: Python's & and >> handle that). The
# inversion is an addition chain whose runs of squarings are
# pow(x, 2^n, p) calls.
#
# Side channels, what this does and does not promise:
#  - No branch and no memory index depends on a secret: the ladder runs all
#    255 steps whatever the scalar (bit t is read from octet t // 8, a
#    public index), the scalar bits only enter arithmetic, and RFC 7748's
#    conditional swap is done with a mask (0 or -1, i.e. all ones, then AND
#    and XOR), never an `if`. The step's differential addition gives the
#    same result whichever way round the two points are, so only the
#    doubling's input is chosen by the mask (`_ladder` says why). The comb
#    runs all 64 columns and reads all 15 table entries in the same order
#    whatever the scalar, keeping the one its digit names with an
#    arithmetic mask (no comparison either). The `if`s there are on public
#    values: u (comb or ladder), the step or column number (slices).
#  - It does NOT promise constant time. Python integers are variable length
#    (MicroPython's mpz and CPython's long alike): a multiplication, a fold
#    or an XOR takes time that depends on how many digits its operands
#    have, and intermediate values near 0 are shorter; small values can
#    even become small ints (no allocation). pow() in the inversion and the
#    allocator/garbage collector add their own data-dependent timing.
#    Against a remote attacker timing whole IKE_SA_INIT exchanges over a
#    network this leak is small; against someone measuring the device's
#    power or instructions it is not negligible. Keys are ephemeral (a
#    fresh one per exchange), which bounds what one trace can give away.

try:
    from gc import threshold as _threshold  # MicroPython
except ImportError:  # CPython: no allocation threshold
    _threshold = None

P = (1 << 255) - 19  # RFC 7748 §4.1
A24 = 121665  # (486662 - 2) / 4, RFC 7748 §5
_MASK255 = (1 << 255) - 1  # decodeUCoordinate drops bit 255
BASE_U = 9  # RFC 7748 §4.1: u = 9
LEN = 32  # octets of a scalar, a u-coordinate, a shared secret


def _scalar(k):
    # decodeScalar25519 (RFC 7748 §5): clamp. Kept as octets: the ladder
    # reads its bits with small-integer operations.
    b = bytearray(k)
    b[0] &= 248
    b[31] &= 127
    b[31] |= 64
    return b


def _u(u):
    # decodeUCoordinate: mask the top bit; non-canonical values (p..2^255-1)
    # are accepted and reduced, as RFC 7748 §5 requires.
    return (int.from_bytes(bytes(u), "little") & _MASK255) % P


def _inverse(z):
    return _last(_inverse_slices(z))


def _inverse_slices(z):
    # z^(p-2) mod p (Fermat; 0 for z = 0) by the usual addition chain for
    # 2^255 - 21: 254 squarings and 11 multiplications, each run of
    # squarings one pow(x, 2^n, p) in C. pow(z, p - 2, p) alone would also
    # multiply at almost every one of its 254 bits: about twice the work.
    # (Squarings folded in Python instead cost 20% less on the C3 stand-in
    # in a roomy heap, but make garbage where pow() frees its own: in a
    # handshake's heap they came out even, on the WebAssembly port 37%
    # dearer.) Yields None twice on the way (slices of 100, 100 and 55
    # squarings), the inverse last.
    p = P
    z2 = z * z % p
    z9 = pow(z2, 4, p) * z % p
    z11 = z9 * z2 % p
    t = z11 * z11 % p * z9 % p  # z^(2^5 - 1)
    t = pow(t, 1 << 5, p) * t % p  # 2^10 - 1
    t10 = t
    t = pow(t, 1 << 10, p) * t % p  # 2^20 - 1
    t = pow(t, 1 << 20, p) * t % p  # 2^40 - 1
    t = pow(t, 1 << 10, p) * t10 % p  # 2^50 - 1
    t50 = t
    t = pow(t, 1 << 50, p) * t % p  # 2^100 - 1
    yield None
    t = pow(t, 1 << 100, p) * t % p  # 2^200 - 1
    yield None
    t = pow(t, 1 << 50, p) * t50 % p  # 2^250 - 1
    yield pow(t, 1 << 5, p) * z11 % p  # 2^255 - 32 + 11 = p - 2


def _ladder(kb, u):
    return _last(_ladder_slices(kb, u))


def _last(slices):
    # run a *_slices generator to its end: its last value is the result
    for r in slices:
        pass
    return r


# MicroPython's early collection (gc.threshold, which firmware/qcdapp.py sets
# to a quarter of the free heap against fragmentation) is off while this
# module computes: its 1.3 MB of allocations a ladder are all temporaries,
# which leave no holes among long-lived objects, and collecting every
# quarter heap of them made a handshake's D-H about half as dear again on
# the C3 stand-in (bench c3). The heap is still collected when it is full,
# and the threshold is back before anything else runs (each slice of
# public_key_slices too).
def _gc_off():
    t = -1 if _threshold is None else _threshold()
    if t >= 0:
        _threshold(-1)
    return t


def _gc_on(t):
    if t >= 0:
        _threshold(t)


def _ladder_slices(kb, u, every=-1):
    # RFC 7748 §5's ladder. kb: the clamped scalar, 32 octets little endian;
    # u: an integer mod p.
    #
    # RFC 7748 swaps (x2, z2) and (x3, z3) when the bit changes, then doubles
    # the first point and adds the two. The addition's outputs,
    # x3 = (da + cb)^2 and z3 = x1 (da - cb)^2 with da = (x3 - z3)(x2 + z2)
    # and cb = (x3 + z3)(x2 - z2), do not change when the points are
    # swapped (da and cb trade places; da - cb only changes sign), so the
    # mask only picks the doubling's input: (a, b) = (x2 + z2, x2 - z2) or
    # (x3 + z3, x3 - z3), 6 operations instead of a swap's 8. The state
    # after each step is the RFC's.
    #
    # Sizes (absolute values; f: one fold, x < 2^n -> < 2^(n - 250)): the
    # state is in [0, p); a..d < 2^257; da, cb
    # < 2^514, f; (da +- cb)^2 < 2^530, f then % p; aa, bb < 2^514, f;
    # aa * bb < 2^528 and e * (aa + a24 e) < 2^548, f then % p.
    x1 = u
    x2, z2 = 1, 0
    x3, z3 = u, 1
    prev = 0
    m = _MASK255
    a24 = A24
    p = P
    for t in range(254, -1, -1):
        if t & every == every:  # public: slices of 2^n steps (every = 2^n - 1; -1: none)
            yield None
        kt = (kb[t >> 3] >> (t & 7)) & 1
        mask = -(kt ^ prev)  # -1 (all ones) when the bit changed, else 0
        prev = kt
        a = x2 + z2
        b = x2 - z2
        c = x3 + z3
        d = x3 - z3
        da = d * a
        da = (da & m) + 19 * (da >> 255)
        cb = c * b
        cb = (cb & m) + 19 * (cb >> 255)
        s = mask & (a ^ c)
        a ^= s
        s = mask & (b ^ d)
        b ^= s
        x3 = da + cb
        x3 = x3 * x3
        x3 = (x3 & m) + 19 * (x3 >> 255)
        x3 %= p
        z3 = da - cb
        z3 = z3 * z3
        z3 = (z3 & m) + 19 * (z3 >> 255)
        z3 = x1 * z3
        z3 = (z3 & m) + 19 * (z3 >> 255)
        z3 %= p
        aa = a * a
        aa = (aa & m) + 19 * (aa >> 255)
        bb = b * b
        bb = (bb & m) + 19 * (bb >> 255)
        x2 = aa * bb
        x2 = (x2 & m) + 19 * (x2 >> 255)
        x2 %= p
        e = aa - bb
        z2 = e * (aa + a24 * e)
        z2 = (z2 & m) + 19 * (z2 >> 255)
        z2 %= p
    # The RFC's last cswap: the result is the first point.
    mask = -prev
    s = mask & (x2 ^ x3)
    x2 ^= s
    s = mask & (z2 ^ z3)
    z2 ^= s
    # 1/z2 is 0 when z2 is 0 mod p: then the result is 0, the all-zero
    # output a low-order point gives (RFC 7748 §6.1).
    for r in _inverse_slices(z2):
        if r is None and every >= 0:
            yield None
    yield x2 * r % p


# The base point's method: ike.x25519_comb's comb when the device has that
# module, else the ladder (a .mpy deploy may leave the comb off: its header).
_base = []


def _base_slices(kb, every):
    if not _base:
        try:
            from ike.x25519_comb import slices
        except ImportError:
            slices = None
        _base.append(slices)
    if _base[0] is None:
        # the ladder in slices of 4 (every + 1) steps
        return _ladder_slices(kb, BASE_U, every * 4 + 3 if every >= 0 else -1)
    return _base[0](kb, every)


def x25519(k, u):
    """RFC 7748 §5 X25519(k, u): k and u are 32 octets each; returns 32."""
    if len(k) != LEN or len(u) != LEN:
        raise ValueError("X25519 takes 32-octet inputs")
    x1 = _u(u)
    # u is public: the base point has its own method
    kb = _scalar(k)
    t = _gc_off()
    try:
        r = _last(_base_slices(kb, -1) if x1 == BASE_U else _ladder_slices(kb, x1))
    finally:
        _gc_on(t)
    return r.to_bytes(LEN, "little")


def public_key(k):
    """X25519(k, 9): what a peer is sent (RFC 7748 §6.1)."""
    return _last(public_key_slices(k, -1))


def public_key_slices(k, every=3):
    """public_key(k) in slices, for idle time (ike.crypto.prepare): a generator
    that yields None after each slice (every + 1 of the comb's 26 columns,
    or 4 (every + 1) of the ladder's 255 steps; the inversion in three), and
    the 32-octet public value last."""
    if len(k) != LEN:
        raise ValueError("X25519 takes 32-octet inputs")
    t = _gc_off()
    try:
        for r in _base_slices(_scalar(k), every):
            if r is None:
                _gc_on(t)
                yield None
                t = _gc_off()
    finally:
        _gc_on(t)
    yield r.to_bytes(LEN, "little")

# X25519 (RFC 7748 §5) for IKEv2 D-H group 31, Curve25519 (RFC 8031).
#
#   x25519(k, u)        the X25519 function: 32-octet scalar and u-coordinate
#                       in, 32-octet u-coordinate out (little endian)
#   public_key(k)       x25519(k, 9): the public value for private k
#
# Written by hand because MicroPython has no elliptic-curve primitive at all
# (stock ESP32 firmware: hashlib, cryptolib AES, no EC; micropython-lib has
# none either); CPython's `cryptography` X25519 is the oracle in the tests.
# It is RFC 7748's ladder over Python integers, with three-argument pow() for
# the final inversion: 255 ladder steps of 255-bit arithmetic (bench: dh).
#
# Side channels, what this does and does not promise:
#  - No branch and no memory index depends on a secret: the ladder runs all
#    255 steps whatever the scalar (bit t is read from octet t // 8, a
#    public index), the scalar bit only enters arithmetic, and the
#    conditional swap is RFC 7748's cswap done with a mask (0 or -1, i.e.
#    all ones, then AND and XOR), never an `if`.
#  - It does NOT promise constant time. Python integers are variable length
#    (MicroPython's mpz and CPython's long alike): a multiplication, a
#    reduction or an XOR takes time that depends on how many digits its
#    operands have, and intermediate values near 0 are shorter; small values
#    can even become small ints (no allocation). pow() for the inversion
#    and the allocator/garbage collector add their own data-dependent
#    timing. Against a remote attacker timing whole IKE_SA_INIT exchanges
#    over a network this leak is small; against someone measuring the
#    device's power or instructions it is not negligible. Keys are
#    ephemeral (a fresh one per exchange), which bounds what one trace can
#    give away.

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


def _ladder(kb, u):
    # RFC 7748 §5's ladder. kb: the clamped scalar, 32 octets little endian;
    # u: an integer mod p. Products are reduced where their size would
    # otherwise grow; da and cb stay unreduced (each % costs about four
    # multiplications on MicroPython), which the squarings after them absorb.
    x1 = u
    x2, z2 = 1, 0
    x3, z3 = u, 1
    swap = 0
    p = P
    for t in range(254, -1, -1):
        kt = (kb[t >> 3] >> (t & 7)) & 1
        swap ^= kt
        # cswap(swap, ...): mask is -1 (all ones) or 0; no branch.
        mask = -swap
        d = mask & (x2 ^ x3)
        x2 ^= d
        x3 ^= d
        d = mask & (z2 ^ z3)
        z2 ^= d
        z3 ^= d
        swap = kt
        a = x2 + z2
        b = x2 - z2
        aa = a * a % p
        bb = b * b % p
        e = aa - bb
        da = (x3 - z3) * a
        cb = (x3 + z3) * b
        x3 = da + cb
        x3 = x3 * x3 % p
        z3 = da - cb
        z3 = x1 * z3 * z3 % p
        x2 = aa * bb % p
        z2 = e * (aa + A24 * e) % p
    mask = -swap
    d = mask & (x2 ^ x3)
    x2 ^= d
    d = mask & (z2 ^ z3)
    z2 ^= d
    # z2^(p-2) = 1/z2 (0 when z2 is 0: then the result is 0, the all-zero
    # output a low-order point gives, RFC 7748 §6.1).
    return x2 * pow(z2, p - 2, p) % p


def x25519(k, u):
    """RFC 7748 §5 X25519(k, u): k and u are 32 octets each; returns 32."""
    if len(k) != LEN or len(u) != LEN:
        raise ValueError("X25519 takes 32-octet inputs")
    return _ladder(_scalar(k), _u(u)).to_bytes(LEN, "little")


def public_key(k):
    """X25519(k, 9): what a peer is sent (RFC 7748 §6.1)."""
    if len(k) != LEN:
        raise ValueError("X25519 takes 32-octet inputs")
    return _ladder(_scalar(k), BASE_U).to_bytes(LEN, "little")

# ike.x25519 (the hand-written ladder MicroPython uses) against `cryptography`
# (OpenSSL's X25519, what ike.crypto uses on CPython) as the oracle, and
# RFC 7748 §5.2's 1,000-iteration vector, on CPython and on the WebAssembly
# MicroPython (the 1,000,000 one is left out: it would take about an hour on
# CPython here, hours on MicroPython).
import os

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ike import crypto, dh, x25519, x25519_comb
from ike.const import CURVE25519
from support import LIB, run_micropython

ITERATED = {1: "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079", 1000: "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"}


def openssl(k, u):
    return X25519PrivateKey.from_private_bytes(k).exchange(X25519PublicKey.from_public_bytes(u))


def test_rfc7748_1000_iterations():
    k = u = b"\x09" + bytes(31)
    for _ in range(1000):
        k, u = x25519.x25519(k, u), k
    assert k.hex() == ITERATED[1000]


# MicroPython's integers are not CPython's (mpz: 16-bit digits, its own
# bitwise operations on negative numbers, which the ladder uses): the
# iterated vector runs there too. Ten iterations per top-level step, so the
# port (it collects garbage only at the top level) frees each step's heap.
MPY_ITERATED = """
from ike import x25519
state = [b"\\x09" + bytes(31)] * 2
def ten(n):
    def step():
        k, u = state
        for _ in range(10):
            k, u = x25519.x25519(k, u), k
        state[0], state[1] = k, u
        if n in (0, 99):
            print("AFTER", (n + 1) * 10, k.hex())
    return step
k = state[0]
print("AFTER 1", x25519.x25519(k, k).hex())
_mpwasm_steps.extend(ten(n) for n in range(100))
"""


def test_rfc7748_1000_iterations_on_micropython(tmp_path):
    script = tmp_path / "iterated.py"
    script.write_text(MPY_ITERATED)
    p = run_micropython(str(script), paths=[(LIB, "/lib")], timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    got = dict(line.split()[1:] for line in p.stdout.splitlines() if line.startswith("AFTER "))
    assert got["1"] == ITERATED[1]
    assert got["1000"] == ITERATED[1000]
    assert len(got) == 3  # 1, 10, 1000


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_ladder_matches_openssl_for_any_scalar_and_u(k, u):
    # Any 32 octets: unclamped scalars, u with the top bit set or >= p
    # (non-canonical), all as RFC 7748 §5 decodes them.
    try:
        want = openssl(k, u)
    except ValueError:  # OpenSSL refuses an all-zero result
        want = bytes(32)
    assert x25519.x25519(k, u) == want


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_public_key_matches_openssl(k):
    want = X25519PrivateKey.from_private_bytes(k).public_key().public_bytes_raw()
    assert x25519.public_key(k) == want == crypto.x25519_base(k)


def test_group31_with_the_ladder_installed_talks_to_openssl():
    # ike.dh on the MicroPython backend (the ladder) against one on OpenSSL.
    saved = crypto._x25519
    a = dh.KeyPair(CURVE25519, os.urandom)  # OpenSSL
    try:
        crypto.install(x25519=x25519.x25519)
        b = dh.KeyPair(CURVE25519, os.urandom)  # the ladder
        s_b = b.shared(a.public)
    finally:
        crypto._x25519 = saved
    assert s_b == a.shared(b.public) and len(s_b) == 32


# The comb's table (ike.x25519_comb.TABLE) recomputed here from Ed25519's base
# point with plain affine Edwards arithmetic (RFC 8032 §5.1), not ike's.
_D = (-121665 * pow(121666, x25519.P - 2, x25519.P)) % x25519.P


def _edwards_add(p1, p2):
    p = x25519.P
    (x1, y1), (x2, y2) = p1, p2
    t = _D * x1 * x2 * y1 * y2 % p
    return (x1 * y2 + y1 * x2) * pow(1 + t, p - 2, p) % p, (y1 * y2 + x1 * x2) * pow(1 - t, p - 2, p) % p


def _mul(k, q):
    r = (0, 1)
    while k:
        if k & 1:
            r = _edwards_add(r, q)
        q = _edwards_add(q, q)
        k >>= 1
    return r


def test_comb_table_holds_the_signed_sums_of_base_point_multiples():
    p = x25519.P
    y = 4 * pow(5, p - 2, p) % p  # RFC 8032 §5.1: B's y = 4/5, x recovered from it
    xx = (y * y - 1) * pow(_D * y * y + 1, p - 2, p) % p
    x = pow(xx, (p + 3) // 8, p)
    if (x * x - xx) % p:
        x = x * pow(2, (p - 1) // 4, p) % p
    assert (1 + y) * pow(1 - y, p - 2, p) % p == 9  # B is u = 9 (RFC 7748 §4.1)
    assert _mul(x25519_comb.L, (x, y)) == (0, 1)  # B's order is l
    assert len(x25519_comb.TABLE) == 32
    for blk in range(2):
        rows = [_mul(1 << (26 * (5 * blk + r)), (x, y)) for r in range(5)]
        for j in range(16):
            q = rows[4]
            for r in range(4):
                xr, yr = rows[r]
                q = _edwards_add(q, (xr, yr) if j >> r & 1 else (-xr % p, yr))
            qx, qy = q
            entry = (qy + qx) % p | ((qy - qx) % p) << 256 | (2 * _D * qx * qy % p) << 512
            assert entry == x25519_comb.TABLE[16 * blk + j], (blk, j)


def test_comb_recoding_gives_the_scalar_back_mod_l():
    # k = sum of s_i 2^i over K's 260 bits, s_i = 2 bit_i - 1
    c = x25519_comb
    for k in (0, 1, 8, c.L - 1, c.L, 2**255 - 1, 2**254 + 123456789):
        big_k = (k + c._BIAS) * c._HALF % c.L
        assert big_k < 2**260
        assert sum((2 * (big_k >> i & 1) - 1) << i for i in range(260)) % c.L == k % c.L


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_comb_gives_what_the_ladder_gives_at_u_9(k):
    kb = x25519._scalar(k)
    assert x25519._last(x25519_comb.slices(kb)) == x25519._ladder(kb, 9)

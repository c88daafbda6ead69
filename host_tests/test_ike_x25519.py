# ike.x25519 (the hand-written ladder MicroPython uses) against `cryptography`
# (OpenSSL's X25519, what ike.crypto uses on CPython) as the oracle, and
# RFC 7748 §5.2's 1,000-iteration vector (the 1,000,000 one is left out: it
# would take about an hour here).
import os

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ike import crypto, dh, x25519
from ike.const import CURVE25519


def openssl(k, u):
    return X25519PrivateKey.from_private_bytes(k).exchange(X25519PublicKey.from_public_bytes(u))


def test_rfc7748_1000_iterations():
    k = u = b"\x09" + bytes(31)
    for _ in range(1000):
        k, u = x25519.x25519(k, u), k
    assert k.hex() == "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"


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

# qcd.tokens against an independent HMAC-SHA-256 (the `cryptography`
# package, OpenSSL underneath), and the constant-time fallback against ==.
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as chmac
from hypothesis import given
from hypothesis import strategies as st
from qcd import tokens

b8 = st.binary(min_size=8, max_size=8)


def openssl_hmac(key, msg):
    h = chmac.HMAC(key, hashes.SHA256())
    h.update(msg)
    return h.finalize()


@given(st.binary(min_size=32, max_size=32), b8, b8, st.one_of(st.none(), st.binary(min_size=4, max_size=4), st.binary(min_size=16, max_size=16)))
def test_make_token_matches_openssl_hmac(secret, spi_i, spi_r, addr):
    assert tokens.make_token(secret, spi_i, spi_r, addr) == openssl_hmac(secret, spi_i + spi_r + (addr or b""))


@given(st.binary(max_size=64), st.binary(max_size=64))
def test_constant_time_fallback_agrees_with_equality(a, b):
    assert tokens._ct_equal(a, b) == (a == b)
    assert tokens.ct_equal(a, b) == (a == b)


@given(st.ip_addresses())
def test_ip_bytes_matches_the_stdlib(addr):
    assert tokens.ip_bytes(str(addr)) == addr.packed
    if addr.version == 6:
        assert tokens.ip_bytes(addr.exploded) == addr.packed

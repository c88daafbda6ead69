# ike.crypto, ike.dh and ike.keymat against known answers from published
# vectors and from independent implementations (the `cryptography` package:
# OpenSSL's AES, HMAC, HKDF and finite-field DH).
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as chmac
from cryptography.hazmat.primitives.asymmetric import dh as cdh
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from hypothesis import given, settings
from hypothesis import strategies as st

from ike import crypto, dh, keymat
from ike.const import MODP_2048, MODP_3072

# The reference implementation warns that finite-field DH is deprecated in
# OpenSSL's eyes; MODP-2048 is still what RFC 7296 peers use.
pytestmark = pytest.mark.filterwarnings("ignore:Diffie-Hellman over finite fields")


def _hmac(key, data):
    h = chmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h.finalize()


# -- the adapter ------------------------------------------------------------------


def test_aes_256_cbc_matches_nist_sp800_38a_f25():
    # NIST SP 800-38A, F.2.5 CBC-AES256.Encrypt
    key = bytes.fromhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
    iv = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    pt = bytes.fromhex(
        "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
        "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
    )
    ct = bytes.fromhex(
        "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d"
        "39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b"
    )
    assert crypto.aes_cbc_encrypt(key, iv, pt) == ct
    assert crypto.aes_cbc_decrypt(key, iv, ct) == pt


def test_hmac_sha256_matches_rfc4231_case_2():
    assert crypto.hmac_sha256(b"Jefe", b"what do ya want for nothing?").hex() == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_ct_equal_compares_whole_values():
    assert crypto.ct_equal(b"abc", b"abc")
    assert not crypto.ct_equal(b"abc", b"abd")
    assert not crypto.ct_equal(b"abc", b"ab")


def test_missing_primitive_raises_crypto_unavailable(monkeypatch):
    monkeypatch.setattr(crypto, "_aes_cbc", None)
    assert "aes_cbc" in crypto.available()
    with pytest.raises(crypto.CryptoUnavailable):
        crypto.aes_cbc_encrypt(bytes(32), bytes(16), bytes(16))


# -- Diffie-Hellman --------------------------------------------------------------


def _probably_prime(n, rounds=8):
    # Miller-Rabin with fixed bases: enough to catch a mistyped digit.
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for a in (2, 3, 5, 7, 11, 13, 17, 19)[:rounds]:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


@pytest.mark.parametrize("group,bits", [(MODP_2048, 2048), (MODP_3072, 3072)])
def test_modp_primes_are_rfc3526_safe_primes(group, bits):
    p = dh.prime(group)
    assert p.bit_length() == bits
    # RFC 3526: p = 2^n - 2^(n-64) - 1 + 2^64 * {...}: top and bottom 64 bits set
    assert p >> (bits - 64) == (1 << 64) - 1
    assert p & ((1 << 64) - 1) == (1 << 64) - 1
    assert _probably_prime(p) and _probably_prime((p - 1) // 2)


@pytest.mark.parametrize("group", [MODP_2048, MODP_3072])
def test_shared_secret_matches_the_cryptography_package(group):
    p = dh.prime(group)
    params = cdh.DHParameterNumbers(p, 2).parameters()
    theirs = params.generate_private_key()
    ours = dh.KeyPair(group)
    their_pub = theirs.public_key().public_numbers().y.to_bytes(dh.public_len(group), "big")
    our_pub = cdh.DHPublicNumbers(int.from_bytes(ours.public, "big"), params.parameter_numbers()).public_key()
    want = theirs.exchange(our_pub)
    got = ours.shared(their_pub)
    # RFC 7296 §2.14: g^ir padded to the modulus length (OpenSSL strips
    # leading zeros, hence the rjust)
    assert got == want.rjust(dh.public_len(group), b"\x00")
    assert len(got) == dh.public_len(group)


def test_public_values_outside_the_group_are_refused():
    kp = dh.KeyPair(MODP_2048)
    n = dh.public_len(MODP_2048)
    p = dh.prime(MODP_2048)
    for bad in (0, 1, p - 1, p, p + 1):
        if bad.bit_length() <= n * 8:
            assert kp.shared(bad.to_bytes(n, "big")) is None
    assert kp.shared(b"\x02" * (n - 1)) is None
    assert kp.shared(b"\x02" * (n + 1)) is None


def test_private_exponents_have_their_full_length():
    kp = dh.KeyPair(MODP_2048, lambda n: bytes(n))
    assert kp._x.bit_length() == 256


# -- key derivation -----------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=1, max_size=80), st.binary(max_size=120), st.integers(1, 40 * 32))
def test_prf_plus_is_hkdf_expand(key, seed, n):
    # RFC 7296 §2.13 prf+ and RFC 5869 HKDF-Expand are the same iteration
    # (T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n)): cryptography's
    # HKDFExpand is an independent implementation of it.
    assert keymat.prf_plus(key, seed, n) == HKDFExpand(hashes.SHA256(), n, seed).derive(key)


def test_prf_plus_refuses_more_than_255_rounds():
    with pytest.raises(ValueError):
        keymat.prf_plus(b"k", b"s", 255 * 32 + 1)


def test_ike_keys_are_the_seven_slices_of_prf_plus():
    ni, nr, spi_i, spi_r = b"\x01" * 32, b"\x02" * 32, b"\x03" * 8, b"\x04" * 8
    g_ir = bytes(range(256))
    seed = _hmac(ni + nr, g_ir)  # SKEYSEED = prf(Ni | Nr, g^ir)
    assert keymat.skeyseed(ni, nr, g_ir) == seed
    km = HKDFExpand(hashes.SHA256(), 7 * 32, ni + nr + spi_i + spi_r).derive(seed)
    k = keymat.IkeKeys(seed, ni, nr, spi_i, spi_r)
    got = [k.sk_d, k.sk_ai, k.sk_ar, k.sk_ei, k.sk_er, k.sk_pi, k.sk_pr]
    assert got == [km[i * 32 : (i + 1) * 32] for i in range(7)]
    assert k.outbound(True) == (k.sk_ei, k.mac_ai) == k.inbound(False)
    assert k.outbound(False) == (k.sk_er, k.mac_ar) == k.inbound(True)
    # the integrity keys once per SA as HMAC keys, the same MACs as SK_ai / SK_ar
    assert k.mac_ai.digest(b"message") == _hmac(k.sk_ai, b"message")
    assert k.mac_ar.digest(b"message") == _hmac(k.sk_ar, b"message")
    # RFC 7296 §2.18: SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)
    assert keymat.skeyseed_rekey(k.sk_d, g_ir, ni, nr) == _hmac(k.sk_d, g_ir + ni + nr)


def test_child_keys_follow_rfc7296_2_17_order():
    sk_d, ni, nr = b"\x05" * 32, b"\x06" * 32, b"\x07" * 32
    km = HKDFExpand(hashes.SHA256(), 128, ni + nr).derive(sk_d)
    assert keymat.child_keys(sk_d, ni, nr) == (km[0:32], km[32:64], km[64:96], km[96:128])
    km2 = HKDFExpand(hashes.SHA256(), 128, b"G" * 256 + ni + nr).derive(sk_d)
    assert keymat.child_keys(sk_d, ni, nr, b"G" * 256)[0] == km2[0:32]


def test_psk_auth_is_the_rfc7296_2_15_composition():
    psk, msg, nonce, sk_p, idb = b"secret-psk", b"M" * 300, b"N" * 32, b"P" * 32, b"\x02\x00\x00\x00dev.example"
    want = _hmac(_hmac(psk, b"Key Pad for IKEv2"), msg + nonce + _hmac(sk_p, idb))
    assert keymat.psk_auth(psk, msg, nonce, sk_p, idb) == want

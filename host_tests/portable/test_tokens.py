# qcd.tokens: token construction, comparison, fingerprints, address bytes.
import unittest

from portable_util import det_bytes, spis
from qcd import tokens


class TestMakeToken(unittest.TestCase):
    def test_hmac_sha256_rfc4231_case2_over_spi_concatenation(self):
        # RFC 4231 test case 2 (key "Jefe", data "what do ya want for
        # nothing?"), split as SPI-I | SPI-R | address: proves both the MAC
        # and the order in which make_token concatenates its inputs.
        t = tokens.make_token(b"Jefe", b"what do ", b"ya want ", b"for nothing?")
        self.assertEqual(t.hex(), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")

    def test_style_5_1_token_is_32_bytes_and_deterministic(self):
        s = det_bytes(1, 32)
        i, r = spis(2)
        a = tokens.make_token(s, i, r)
        self.assertEqual(len(a), tokens.TOKEN_LEN)
        self.assertEqual(a, tokens.make_token(s, i, r))

    def test_token_depends_on_secret_spis_and_order(self):
        s = det_bytes(1, 32)
        i, r = spis(2)
        base = tokens.make_token(s, i, r)
        self.assertNotEqual(base, tokens.make_token(det_bytes(3, 32), i, r))
        self.assertNotEqual(base, tokens.make_token(s, r, i))
        self.assertNotEqual(base, tokens.make_token(s, i, spis(4)[1]))

    def test_style_5_2_binds_the_taker_address(self):
        s = det_bytes(1, 32)
        i, r = spis(2)
        a = tokens.make_token(s, i, r, tokens.ip_bytes("192.0.2.1"))
        b = tokens.make_token(s, i, r, tokens.ip_bytes("192.0.2.2"))
        self.assertNotEqual(a, b)
        self.assertNotEqual(a, tokens.make_token(s, i, r))

    def test_cached_pads_stay_right_across_many_secrets(self):
        # make_token keeps each secret's padded HMAC key (qcd.tokens._keys);
        # cycling through more secrets than it keeps, and back, must give the
        # same tokens as a one-shot HMAC, whatever is cached.
        from ikebase.hmac256 import hmac_sha256

        i, r = spis(9)
        secrets = [det_bytes(50 + k, 32) for k in range(tokens._KEYS_MAX + 3)]
        for _ in range(2):
            for s in secrets:
                self.assertEqual(tokens.make_token(s, i, r), hmac_sha256(s, i + r))
        self.assertTrue(len(tokens._keys) <= tokens._KEYS_MAX)
        self.assertEqual(tokens.make_token(bytearray(secrets[0]), i, r), hmac_sha256(secrets[0], i + r))


class TestCompare(unittest.TestCase):
    def test_ct_equal(self):
        a = det_bytes(5, 32)
        self.assertTrue(tokens.ct_equal(a, bytes(a)))
        self.assertFalse(tokens.ct_equal(a, a[:-1] + bytes([a[-1] ^ 1])))
        self.assertFalse(tokens.ct_equal(a, a[:16]))

    def test_portable_fallback_compare(self):
        a = det_bytes(6, 32)
        self.assertTrue(tokens._ct_equal(a, bytearray(a)))
        self.assertFalse(tokens._ct_equal(a, bytes([a[0] ^ 0x80]) + a[1:]))
        self.assertFalse(tokens._ct_equal(a, a + b"x"))
        self.assertTrue(tokens._ct_equal(b"", b""))


class TestFingerprint(unittest.TestCase):
    def test_fingerprint_is_first_8_bytes_of_sha256_in_hex(self):
        # SHA-256 of 32 zero bytes starts 66687aadf862bd77.
        self.assertEqual(tokens.fingerprint(bytes(32)), "66687aadf862bd77")


class TestIpBytes(unittest.TestCase):
    def test_ipv4(self):
        self.assertEqual(tokens.ip_bytes("192.0.2.1"), bytes([192, 0, 2, 1]))
        self.assertEqual(tokens.ip_bytes("0.0.0.0"), bytes(4))

    def test_ipv6_forms(self):
        self.assertEqual(tokens.ip_bytes("::"), bytes(16))
        self.assertEqual(tokens.ip_bytes("::1"), bytes(15) + b"\x01")
        self.assertEqual(tokens.ip_bytes("2001:db8::1"), bytes([0x20, 1, 0x0D, 0xB8]) + bytes(11) + b"\x01")
        self.assertEqual(tokens.ip_bytes("fe80::"), bytes([0xFE, 0x80]) + bytes(14))
        self.assertEqual(tokens.ip_bytes("1:2:3:4:5:6:7:8"), bytes([0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]))
        self.assertEqual(tokens.ip_bytes("::ffff:192.0.2.1"), bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 1]))

    def test_rejects_non_addresses(self):
        for bad in ("", "1.2.3", "1.2.3.4.5", "256.1.1.1", "a.b.c.d", "1..2.3", "1:2:3", ":::", "1::2::3",
                    "12345::", "g::1", "1:2:3:4:5:6:7:8:9", "1:2:3:4::5:6:7:8", " 1.2.3.4"):
            with self.assertRaises(ValueError):
                tokens.ip_bytes(bad)

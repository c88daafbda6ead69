# ikebase.hmac256: HMAC-SHA-256 with cached padded keys, against RFC 4231's
# vectors and against the platform's own hmac module as an oracle (CPython's
# standard library hmac; micropython-lib's hmac on MicroPython, which the
# WebAssembly port freezes).
import hashlib
import unittest

from ikebase import hmac256
from portable_util import det_bytes

try:
    import hmac as oracle
except ImportError:  # a board without micropython-lib's hmac (stock firmware)
    oracle = None

# RFC 4231 §4: (key, data, HMAC-SHA-256). Case 5 (truncated output) is
# case-specific to 128-bit output; it is checked as a prefix.
_K6 = b"\xaa" * 131
RFC4231 = (
    (b"\x0b" * 20, b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (_K6, b"Test Using Larger Than Block-Size Key - Hash Key First", "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (
        _K6,
        b"This is a test using a larger than block-size key and a larger than block-size data."
        b" The key needs to be hashed before being used by the HMAC algorithm.",
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
    ),
)


def _oracle(key, data):
    return oracle.new(bytes(key), bytes(data), hashlib.sha256).digest()


class TestRfc4231(unittest.TestCase):
    def test_rfc4231_cases_1_to_4_6_7(self):
        for key, data, want in RFC4231:
            self.assertEqual(hmac256.hmac_sha256(key, data).hex(), want)
            self.assertEqual(hmac256.HmacKey(key).digest(data).hex(), want)

    def test_rfc4231_case5_truncated_to_128_bits(self):
        t = hmac256.hmac_sha256(b"\x0c" * 20, b"Test With Truncation")
        self.assertEqual(t[:16].hex(), "a3b6167473100ee06e0c796c2955552b")


class TestCachedKey(unittest.TestCase):
    def test_one_key_many_messages_each_as_a_fresh_hmac(self):
        # The padded blocks are reused; no state leaks from one MAC to the next.
        key = det_bytes(1, 32)
        k = hmac256.HmacKey(key)
        for n in (0, 1, 16, 55, 56, 63, 64, 65, 119, 120, 200):
            msg = det_bytes(100 + n, n)
            self.assertEqual(k.digest(msg), hmac256.hmac_sha256(key, msg))
        self.assertEqual(k.digest(b"x"), k.digest(b"x"))

    def test_key_lengths_around_the_block_size(self):
        # 64 octets is used as is; 65 is hashed first: their MACs differ from
        # the zero-padded shorter key's.
        msg = b"m"
        a = hmac256.hmac_sha256(b"\x01" * 63, msg)
        b = hmac256.hmac_sha256(b"\x01" * 63 + b"\x00", msg)
        self.assertEqual(a, b)  # RFC 2104: K padded with zeros to B octets
        c = hmac256.hmac_sha256(b"\x01" * 65, msg)
        d = hmac256.hmac_sha256(hashlib.sha256(b"\x01" * 65).digest(), msg)
        self.assertEqual(c, d)  # longer than B: H(K) is the key

    def test_accepts_bytearray_and_memoryview(self):
        key = det_bytes(2, 32)
        msg = det_bytes(3, 40)
        want = hmac256.hmac_sha256(key, msg)
        self.assertEqual(hmac256.HmacKey(bytearray(key)).digest(memoryview(msg)), want)
        self.assertEqual(hmac256.hmac_sha256(memoryview(key), bytearray(msg)), want)


class TestAgainstPlatformHmac(unittest.TestCase):
    def setUp(self):
        if oracle is None:
            self.skipTest("no hmac module on this board to compare with")

    def test_matches_platform_hmac_for_keys_0_to_130_octets(self):
        for n in range(0, 131, 3):
            key = det_bytes(1000 + n, n)
            k = hmac256.HmacKey(key)
            for m in (0, 16, 20, 64, 97):
                msg = det_bytes(2000 + n * 7 + m, m)
                self.assertEqual(k.digest(msg), _oracle(key, msg))

    def test_matches_platform_hmac_for_token_and_prf_shapes(self):
        # A QCD token (32-octet secret over SPI-I | SPI-R [| address]) and a
        # prf+ round (SKEYSEED over T | Ni | Nr | SPIi | SPIr | n).
        s = det_bytes(7, 32)
        for tail in (b"", det_bytes(8, 4), det_bytes(9, 16)):
            msg = det_bytes(10, 16) + tail
            self.assertEqual(hmac256.HmacKey(s).digest(msg), _oracle(s, msg))
        seed = det_bytes(11, 32)
        t = b""
        k = hmac256.HmacKey(seed)
        for n in range(1, 8):
            data = t + det_bytes(12, 80) + bytes((n,))
            t = k.digest(data)
            self.assertEqual(t, _oracle(seed, data))


class TestCompare(unittest.TestCase):
    def test_ct_equal_and_the_portable_loop(self):
        a = det_bytes(5, 32)
        for eq in (hmac256.ct_equal, hmac256.ct_equal_loop):
            self.assertTrue(eq(a, bytes(a)))
            self.assertFalse(eq(a, a[:-1] + bytes([a[-1] ^ 1])))
            self.assertFalse(eq(a, bytes([a[0] ^ 0x80]) + a[1:]))
            self.assertFalse(eq(a, a[:16]))
        self.assertTrue(hmac256.ct_equal_loop(a, bytearray(a)))
        self.assertTrue(hmac256.ct_equal_loop(b"", b""))


if __name__ == "__main__":
    unittest.main()

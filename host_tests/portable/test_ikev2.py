# ikebase.ikev2: the one IKEv2 framer lib/qcd and lib/ike share.
import unittest

from ike import message
from ikebase import ikev2
from qcd import wire

SPI_I, SPI_R = b"\x01" * 8, b"\x02" * 8


def msg(payloads, first=None):
    return ikev2.build(SPI_I, SPI_R, ikev2.INFORMATIONAL, ikev2.FLAG_I, 1, payloads, first)


class TestUdp4500(unittest.TestCase):
    def test_marker_esp_and_keepalive_told_apart(self):
        self.assertEqual(ikev2.split_4500(b"\x00\x00\x00\x00abc"), ("ike", b"abc"))
        self.assertEqual(ikev2.split_4500(b"\x00\x00\x01\x00abcd"), ("esp", b"\x00\x00\x01\x00abcd"))
        self.assertEqual(ikev2.split_4500(b"\xff"), ("keepalive", None))
        self.assertEqual(ikev2.split_4500(b"\x00\x00"), (None, None))


class TestOneRuleForBoth(unittest.TestCase):
    """The QCD side (qcd.wire) and the engine (ike.message) accept and refuse
    the same frames: they walk the chain with the same code."""

    def both(self, buf):
        return wire.parse(buf) is not None, message.parse(buf) is not None

    def test_one_payload_cap(self):
        ok = msg([(ikev2.PT_V, b"")] * ikev2.MAX_PAYLOADS)
        over = msg([(ikev2.PT_V, b"")] * (ikev2.MAX_PAYLOADS + 1))
        self.assertEqual(self.both(ok), (True, True))
        self.assertEqual(self.both(over), (False, False))
        self.assertEqual(ikev2.last_error, "too many payloads")

    def test_sk_frame_rules(self):
        short = msg([(ikev2.PT_SK, bytes(ikev2.SK_MIN_BODY - 1))])
        self.assertEqual(self.both(short), (False, False))
        not_last = msg([(ikev2.PT_SK, bytes(48)), (ikev2.PT_V, b"")])
        self.assertEqual(self.both(not_last), (False, False))
        frag0 = msg([(ikev2.PT_SKF, b"\x00\x00\x00\x01" + bytes(16))])
        self.assertEqual(self.both(frag0), (False, False))
        self.assertEqual(self.both(msg([(ikev2.PT_SK, bytes(48))])), (True, True))

    def test_header_checks(self):
        good = msg([(ikev2.PT_N, ikev2.notify_body(ikev2.INITIAL_CONTACT))])
        self.assertEqual(self.both(good), (True, True))
        self.assertEqual(self.both(good + b"\x00"), (False, False))  # Length differs
        v3 = bytearray(good)
        v3[17] = 0x30
        self.assertEqual(self.both(bytes(v3)), (False, False))

    def test_notify_codec(self):
        body = ikev2.notify_body(ikev2.REKEY_SA, b"data", 3, b"\xaa\xbb\xcc\xdd")
        self.assertEqual(ikev2.notify(body, 0, len(body)), (ikev2.REKEY_SA, 3, b"\xaa\xbb\xcc\xdd", b"data"))
        bad = b"\x03\x09" + body[2:]  # SPI Size past the body
        self.assertIsNone(ikev2.notify(bad, 0, 8))
        self.assertIsNone(ikev2.notify(body, 0, 3))


if __name__ == "__main__":
    unittest.main()

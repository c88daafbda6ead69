# qcd.wire: header and payload-chain parsing, Notify codec, §4.5/§8.2 answers.
import unittest

from portable_util import det_bytes, spis
from qcd import wire
from qcdhost import names

I, R = spis(1)


def protected_request(exchange=wire.INFORMATIONAL, flags=wire.FLAG_I, msg_id=7, sk_len=48, spi_r=R):
    return wire.build(I, spi_r, exchange, flags, msg_id, [(wire.PT_SK, det_bytes(9, sk_len))], first=wire.PT_SK)


class TestParse(unittest.TestCase):
    def test_header_fields(self):
        m = wire.parse(protected_request(msg_id=0x01020304))
        self.assertEqual(m.spi_i, I)
        self.assertEqual(m.spi_r, R)
        self.assertEqual(m.exchange, wire.INFORMATIONAL)
        self.assertEqual(m.msg_id, 0x01020304)
        self.assertEqual(m.version, 0x20)
        self.assertTrue(m.is_protected())
        self.assertTrue(m.flags & wire.FLAG_I)
        self.assertFalse(m.is_response())

    def test_payload_chain_and_notifies(self):
        pl = [
            (wire.PT_N, wire.notify_body(wire.INITIAL_CONTACT)),
            (wire.PT_V, b"vendor"),
            (wire.PT_N, wire.notify_body(wire.QUICK_CRASH_DETECTION, det_bytes(3, 32), 1)),
            (wire.PT_N, wire.notify_body(wire.REKEY_SA, b"", 3, b"\x01\x02\x03\x04")),
        ]
        m = wire.parse(wire.build(I, R, wire.INFORMATIONAL, 0, 1, pl))
        self.assertFalse(m.is_protected())
        self.assertEqual([p[0] for p in m.payloads], [wire.PT_N, wire.PT_V, wire.PT_N, wire.PT_N])
        self.assertEqual(
            m.notifies(),
            [
                (wire.INITIAL_CONTACT, 0, b"", b""),
                (wire.QUICK_CRASH_DETECTION, 1, b"", det_bytes(3, 32)),
                (wire.REKEY_SA, 3, b"\x01\x02\x03\x04", b""),
            ],
        )
        self.assertEqual(m.buf[m.payloads[1][2] : m.payloads[1][3]], b"vendor")

    def test_empty_message_parses(self):
        m = wire.parse(wire.build(I, R, wire.INFORMATIONAL, wire.FLAG_R, 3, []))
        self.assertEqual(m.payloads, [])
        self.assertEqual(m.notifies(), [])

    def test_rejects_short_and_bad_version_and_length(self):
        good = protected_request()
        self.assertIsNone(wire.parse(good[:27]))
        self.assertIsNone(wire.parse(b""))
        self.assertIsNone(wire.parse(good[:17] + b"\x10" + good[18:]))  # IKEv1 major version
        self.assertIsNone(wire.parse(good + b"\x00"))  # datagram longer than Length
        self.assertIsNone(wire.parse(good[:-1]))  # shorter than Length

    def test_every_truncation_is_refused(self):
        pl = [(wire.PT_N, wire.notify_body(wire.INVALID_IKE_SPI)), (wire.PT_N, wire.notify_body(wire.QUICK_CRASH_DETECTION, det_bytes(4, 32)))]
        msg = wire.build(I, R, wire.INFORMATIONAL, wire.FLAG_R, 1, pl)
        for n in range(len(msg)):
            cut = bytearray(msg[:n])
            if n >= 28:
                cut[24:28] = n.to_bytes(4, "big")  # header length made consistent
            self.assertIsNone(wire.parse(bytes(cut)), n)

    def test_payload_length_below_header_or_past_end_is_refused(self):
        msg = bytearray(wire.build(I, R, wire.INFORMATIONAL, 0, 1, [(wire.PT_N, wire.notify_body(wire.INVALID_SPI, b"abcd"))]))
        for bad in (0, 1, 3, len(msg) - 28 + 1, 0xFFFF):
            m = bytearray(msg)
            m[30:32] = bad.to_bytes(2, "big")
            self.assertIsNone(wire.parse(bytes(m)), bad)

    def test_trailing_bytes_after_chain_are_refused(self):
        msg = bytearray(wire.build(I, R, wire.INFORMATIONAL, 0, 1, [(wire.PT_V, b"abcd")]) + b"\x00\x00\x00\x00")
        msg[24:28] = len(msg).to_bytes(4, "big")
        self.assertIsNone(wire.parse(bytes(msg)))

    def test_sk_must_be_last_and_long_enough(self):
        self.assertIsNotNone(wire.parse(protected_request(sk_len=wire.SK_MIN_BODY)))
        self.assertIsNone(wire.parse(protected_request(sk_len=wire.SK_MIN_BODY - 1)))
        # SK followed by another payload: refused.
        msg = wire.build(I, R, wire.INFORMATIONAL, 0, 1, [(wire.PT_SK, bytes(16)), (wire.PT_V, b"x")])
        self.assertIsNone(wire.parse(msg))

    def test_skf_fragment_numbers(self):
        def skf(frag, total):
            body = frag.to_bytes(2, "big") + total.to_bytes(2, "big") + bytes(16)
            return wire.build(I, R, wire.IKE_AUTH, wire.FLAG_I, 1, [(wire.PT_SKF, body)])

        self.assertTrue(wire.parse(skf(1, 2)).is_protected())
        self.assertIsNone(wire.parse(skf(0, 2)))
        self.assertIsNone(wire.parse(skf(3, 2)))

    def test_malformed_notify_makes_notifies_none(self):
        # A Notify whose SPI Size runs past its payload.
        body = bytes([0, 9]) + wire.INVALID_SPI.to_bytes(2, "big") + b"abcd"
        m = wire.parse(wire.build(I, R, wire.INFORMATIONAL, 0, 1, [(wire.PT_N, body)]))
        self.assertIsNone(m.notifies())
        m = wire.parse(wire.build(I, R, wire.INFORMATIONAL, 0, 1, [(wire.PT_N, b"\x00\x00")]))
        self.assertIsNone(m.notifies())

    def test_payload_count_is_bounded(self):
        pl = [(wire.PT_V, b"")] * (wire.MAX_PAYLOADS + 1)
        self.assertIsNone(wire.parse(wire.build(I, R, wire.INFORMATIONAL, 0, 1, pl)))
        self.assertIsNotNone(wire.parse(wire.build(I, R, wire.INFORMATIONAL, 0, 1, pl[1:])))


class TestNotifyCodec(unittest.TestCase):
    def test_notify_body_layout(self):
        b = wire.notify_body(wire.QUICK_CRASH_DETECTION, b"T" * 16, 1)
        self.assertEqual(b[:4], bytes([1, 0, 0x40, 0x23]))  # 16419 = 0x4023
        self.assertEqual(b[4:], b"T" * 16)


class TestAnswers(unittest.TestCase):
    def test_invalid_ike_spi_answer_section_4_5(self):
        req = wire.parse(protected_request(exchange=wire.INFORMATIONAL, flags=wire.FLAG_I, msg_id=42))
        toks = [det_bytes(1, 32), det_bytes(2, 32)]
        a = wire.parse(wire.answer_invalid_ike_spi(req, toks, 1))
        self.assertEqual((a.spi_i, a.spi_r, a.msg_id, a.exchange), (I, R, 42, wire.INFORMATIONAL))
        self.assertTrue(a.is_response())
        self.assertFalse(a.flags & wire.FLAG_I)  # the request came from the original initiator
        self.assertFalse(a.is_protected())
        self.assertEqual(
            a.notifies(),
            [
                (wire.INVALID_IKE_SPI, 0, b"", b""),
                (wire.QUICK_CRASH_DETECTION, 1, b"", toks[0]),
                (wire.QUICK_CRASH_DETECTION, 1, b"", toks[1]),
            ],
        )

    def test_answer_initiator_flag_is_opposite_of_request(self):
        req = wire.parse(protected_request(exchange=wire.CREATE_CHILD_SA, flags=0))
        a = wire.parse(wire.answer_invalid_ike_spi(req, [det_bytes(1, 32)], 0))
        self.assertTrue(a.flags & wire.FLAG_I)
        self.assertEqual(a.exchange, wire.CREATE_CHILD_SA)
        self.assertEqual(a.notifies()[1][1], 0)  # configured Protocol ID

    def test_invalid_spi_answer_section_8_2(self):
        a = wire.parse(wire.answer_invalid_spi(b"\xc0\x01\x02\x03", I, R, True, [det_bytes(1, 32)]))
        self.assertEqual((a.spi_i, a.spi_r, a.msg_id, a.exchange), (I, R, 0, wire.INFORMATIONAL))
        self.assertFalse(a.is_response())
        self.assertTrue(a.flags & wire.FLAG_I)
        self.assertEqual(a.notifies()[0], (wire.INVALID_SPI, 0, b"", b"\xc0\x01\x02\x03"))
        self.assertEqual(a.notifies()[1], (wire.QUICK_CRASH_DETECTION, 1, b"", det_bytes(1, 32)))


class TestUdp4500(unittest.TestCase):
    def test_esp_spi_bounds(self):
        self.assertEqual(wire.esp_spi(b"\x00\x00\x01\x00" + bytes(4)), 256)
        self.assertIsNone(wire.esp_spi(b"\x00\x00\x00\xff" + bytes(4)))  # reserved SPI
        self.assertIsNone(wire.esp_spi(b"\x12\x34\x56\x78\x00"))  # no sequence number


class TestDescribe(unittest.TestCase):
    def test_names_notify_types(self):
        req = wire.parse(protected_request())
        lines = names.describe(wire.answer_invalid_ike_spi(req, [det_bytes(1, 32)]))
        text = "\n".join(lines)
        self.assertIn("INVALID_IKE_SPI (4)", text)
        self.assertIn("QUICK_CRASH_DETECTION (16419)", text)
        self.assertIn("INFORMATIONAL", text)
        self.assertIsNone(names.describe(b"junk"))

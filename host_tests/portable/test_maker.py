# qcd.maker: when the maker hands out tokens and when it answers unprotected.
import unittest

from portable_util import det_bytes, spis
from qcd import wire
from qcd.keys import MemoryKeys
from qcd.maker import Maker
from qcd.tokens import STYLE_ADDR, ip_bytes, make_token

S1, S2 = det_bytes(100, 32), det_bytes(101, 32)
I, R = spis(5)


def req(exchange=wire.INFORMATIONAL, flags=wire.FLAG_I, spi_r=R, protected=True, msg_id=3):
    pl = [(wire.PT_SK, bytes(32))] if protected else [(wire.PT_N, wire.notify_body(wire.INITIAL_CONTACT))]
    return wire.build(I, spi_r, exchange, flags, msg_id, pl)


def maker(**kw):
    kw.setdefault("rate", None)
    return Maker(MemoryKeys([S1]), **kw)


class TestHandover(unittest.TestCase):
    def test_hands_over_the_current_secret_token(self):
        m = Maker(MemoryKeys([S2, S1]))
        self.assertEqual(m.handover(I, R, "192.0.2.1"), [(wire.QUICK_CRASH_DETECTION, 1, make_token(S2, I, R))])
        self.assertEqual(m.counters["handed_over"], 1)

    def test_style_5_2_uses_the_taker_address(self):
        m = Maker(MemoryKeys([S1]), style=STYLE_ADDR)
        tok = m.handover(I, R, "192.0.2.1")[0][2]
        self.assertEqual(tok, make_token(S1, I, R, ip_bytes("192.0.2.1")))

    def test_protocol_id_is_configurable(self):
        self.assertEqual(Maker(MemoryKeys([S1]), protocol_id=0).handover(I, R, None)[0][1], 0)

    def test_no_secret_no_token(self):
        m = Maker(MemoryKeys([]))
        self.assertEqual(m.handover(I, R, None), [])
        self.assertEqual(m.counters["refused_no_secret"], 1)


class TestAnswerIke(unittest.TestCase):
    def test_answers_a_protected_request_for_unknown_spis(self):
        m = Maker(MemoryKeys([S2, S1]), rate=None)
        a = wire.parse(m.answer_ike(wire.parse(req()), "192.0.2.1", 0))
        toks = [n[3] for n in a.notifies() if n[0] == wire.QUICK_CRASH_DETECTION]
        # One candidate per held secret, current first (secret rollover).
        self.assertEqual(toks, [make_token(S2, I, R), make_token(S1, I, R)])
        self.assertEqual(m.counters["answered_ike"], 1)

    def test_every_answerable_exchange(self):
        for ex in (wire.IKE_AUTH, wire.CREATE_CHILD_SA, wire.INFORMATIONAL, wire.IKE_INTERMEDIATE):
            self.assertIsNotNone(maker().answer_ike(wire.parse(req(exchange=ex)), "192.0.2.1", 0), ex)

    def test_silent_on_responses(self):
        m = maker()
        self.assertIsNone(m.answer_ike(wire.parse(req(flags=wire.FLAG_R)), "192.0.2.1", 0))
        self.assertEqual(m.counters["refused_response"], 1)

    def test_silent_on_unprotected(self):
        m = maker()
        self.assertIsNone(m.answer_ike(wire.parse(req(protected=False)), "192.0.2.1", 0))
        self.assertEqual(m.counters["refused_unprotected"], 1)

    def test_silent_on_ike_sa_init_and_zero_responder_spi(self):
        m = maker()
        self.assertIsNone(m.answer_ike(wire.parse(req(exchange=wire.IKE_SA_INIT)), "192.0.2.1", 0))
        self.assertIsNone(m.answer_ike(wire.parse(req(spi_r=bytes(8))), "192.0.2.1", 0))
        self.assertEqual(m.counters["refused_sa_init"], 2)

    def test_silent_on_reserved_exchange(self):
        m = maker()
        self.assertIsNone(m.answer_ike(wire.parse(req(exchange=0)), "192.0.2.1", 0))
        self.assertIsNone(m.answer_ike(wire.parse(req(exchange=200)), "192.0.2.1", 0))
        self.assertEqual(m.counters["refused_exchange"], 2)

    def test_never_for_a_held_sa_by_either_spi_and_either_i_flag_section_9_2(self):
        # Our SPI is the initiator's (we initiated) or the responder's; the
        # request's I flag may point at either; any of them is refused.
        for ours_is_initiator in (True, False):
            m = maker()
            m.ike_created(I if ours_is_initiator else R)
            for flags in (wire.FLAG_I, 0):
                self.assertIsNone(m.answer_ike(wire.parse(req(flags=flags)), "192.0.2.1", 0))
            self.assertEqual(m.counters["refused_known_sa"], 2)

    def test_held_from_created_to_gone_whatever_came_between(self):
        m = maker()
        i2, r2 = spis(6)
        m.ike_created(I)  # IKE_SA_INIT sent: we know only our SPI
        self.assertIsNone(m.answer_ike(wire.parse(req()), "192.0.2.1", 0))
        m.ike_up(I, R, True, "192.0.2.1")
        m.ike_created(i2)  # our rekey request in flight
        m.ike_rekeyed(I, R, i2, r2, True)
        self.assertIsNone(m.answer_ike(wire.parse(req()), "192.0.2.1", 0))  # the old SA lingers
        m.ike_gone(I, R, True)
        self.assertIsNotNone(m.answer_ike(wire.parse(req()), "192.0.2.1", 0))
        self.assertEqual(m.held, {i2})

    def test_silent_on_malformed(self):
        m = maker()
        self.assertIsNone(m.answer_ike(wire.parse(req()[:-1]), "192.0.2.1", 0))
        self.assertEqual(m.counters["refused_malformed"], 1)

    def test_rate_limited(self):
        m = Maker(MemoryKeys([S1]), rate=1, burst=2)
        got = [m.answer_ike(wire.parse(req()), "192.0.2.1", 0) is not None for _ in range(4)]
        self.assertEqual(got, [True, True, False, False])
        self.assertEqual(m.counters["refused_rate"], 2)
        self.assertIsNotNone(m.answer_ike(wire.parse(req()), "192.0.2.1", 1000))

    def test_garbage_does_not_drain_the_bucket(self):
        m = Maker(MemoryKeys([S1]), rate=1, burst=1)
        for _ in range(10):
            m.answer_ike(wire.parse(b"garbage"), "192.0.2.1", 0)
            m.answer_ike(wire.parse(req(flags=wire.FLAG_R)), "192.0.2.1", 0)
        self.assertIsNotNone(m.answer_ike(wire.parse(req()), "192.0.2.1", 0))

    def test_answer_window_after_boot(self):
        m = maker(window_ms=60000, boot_ms=1000)
        self.assertIsNotNone(m.answer_ike(wire.parse(req()), "192.0.2.1", 61000))
        self.assertIsNone(m.answer_ike(wire.parse(req()), "192.0.2.1", 61001))
        self.assertEqual(m.counters["refused_window"], 1)

    def test_style_5_2_answer_uses_the_source_address(self):
        m = maker(style=STYLE_ADDR)
        a = wire.parse(m.answer_ike(wire.parse(req()), "2001:db8::7", 0))
        self.assertEqual(a.notifies()[1][3], make_token(S1, I, R, ip_bytes("2001:db8::7")))


class TestAnswerEsp(unittest.TestCase):
    def keys(self):
        k = MemoryKeys([S1])
        k.child_put(0xC0FFEE01, I, R, True, ip_bytes("192.0.2.1"))
        return k

    def test_answers_a_mapped_spi(self):
        m = Maker(self.keys(), rate=None)
        a = wire.parse(m.answer_esp(b"\xc0\xff\xee\x01" + bytes(20), 0))
        self.assertEqual((a.spi_i, a.spi_r), (I, R))
        self.assertEqual(a.notifies()[0], (wire.INVALID_SPI, 0, b"", b"\xc0\xff\xee\x01"))
        self.assertEqual(a.notifies()[1][3], make_token(S1, I, R))
        self.assertEqual(m.counters["answered_esp"], 1)

    def test_style_5_2_uses_the_stored_peer_address(self):
        m = Maker(self.keys(), rate=None, style=STYLE_ADDR)
        a = wire.parse(m.answer_esp(b"\xc0\xff\xee\x01" + bytes(20), 0))
        self.assertEqual(a.notifies()[1][3], make_token(S1, I, R, ip_bytes("192.0.2.1")))

    def test_silent_on_unmapped_reserved_short_and_live(self):
        m = Maker(self.keys(), rate=None)
        self.assertIsNone(m.answer_esp(b"\xc0\xff\xee\x02" + bytes(20), 0))
        self.assertIsNone(m.answer_esp(b"\x00\x00\x00\x05" + bytes(20), 0))
        self.assertIsNone(m.answer_esp(b"\xc0\xff\xee", 0))
        m.ike_created(I)  # the entry says we initiated: I is ours
        self.assertIsNone(m.answer_esp(b"\xc0\xff\xee\x01" + bytes(20), 0))
        c = m.counters
        self.assertEqual((c["refused_unmapped"], c["refused_malformed"], c["refused_known_sa"]), (1, 2, 1))


class TestConfiguration(unittest.TestCase):
    def test_rejects_bad_style_and_protocol_id(self):
        with self.assertRaises(ValueError):
            Maker(MemoryKeys([S1]), style=7)
        with self.assertRaises(ValueError):
            Maker(MemoryKeys([S1]), protocol_id=256)

# qcd.maker: when the maker hands out tokens and when it answers unprotected.
import unittest

from portable_util import det_bytes, spis
from qcd import wire
from qcdhost.keys import MemoryKeys
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
        m = Maker(MemoryKeys([S1]), rate=None)
        a = wire.parse(m.answer_ike(wire.parse(req()), "192.0.2.1", 0))
        toks = [n[3] for n in a.notifies() if n[0] == wire.QUICK_CRASH_DETECTION]
        self.assertEqual(toks, [make_token(S1, I, R)])
        self.assertEqual(m.counters["answered_ike"], 1)

    def test_several_secrets_and_no_generation_known_give_one_answer_led_by_each_token(self):
        # Secret rollover, and nothing says which secret made the peer's
        # token: one answer per candidate, each led by another token, every
        # one carrying them all (a taker reading all N(QCD) takes the first).
        m = Maker(MemoryKeys([S2, S1]), rate=None)
        out = m.answer_ike(wire.parse(req()), "192.0.2.1", 0)
        self.assertIsInstance(out, tuple)
        toks = [[n[3] for n in wire.parse(a).notifies() if n[0] == wire.QUICK_CRASH_DETECTION] for a in out]
        t2, t1 = make_token(S2, I, R), make_token(S1, I, R)
        self.assertEqual(toks, [[t2, t1], [t1, t2]])
        self.assertEqual((m.counters["answered_ike"], m.counters["answered_unknown_gen"]), (1, 1))

    def test_each_extra_answer_takes_one_from_the_rate_limit(self):
        m = Maker(MemoryKeys([S2, S1]), rate=1, burst=1)
        out = m.answer_ike(wire.parse(req()), "192.0.2.1", 0)
        self.assertEqual(len(out), 1)  # the bucket had one: the current token's answer only
        self.assertEqual(m.counters["refused_rate"], 1)

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


class TestGatewayLane(unittest.TestCase):
    """Issue 13 §2: strangers cannot starve the gateway that matters."""

    GW = "192.0.2.1"

    def flood_then_gateway(self, m):
        # 50 requests from 50 other addresses, all at once: their lane empties
        for k in range(50):
            m.answer_ike(wire.parse(req(msg_id=k)), "198.51.100.%d" % (k + 1), 0)
        return [m.answer_ike(wire.parse(req(msg_id=99)), self.GW, 0) is not None for _ in range(3)]

    def test_the_configured_peer_has_a_lane_of_its_own(self):
        m = Maker(MemoryKeys([S1]), rate=5, burst=2, gateways=[self.GW])
        self.assertEqual(self.flood_then_gateway(m), [True, True, False])
        self.assertEqual((m.counters["refused_rate"], m.counters["refused_rate_gateway"]), (48, 1))

    def test_peers_of_the_child_spi_map_have_it_too(self):
        # after a reboot the persisted map is what names the gateway
        k = MemoryKeys([S1])
        k.child_put(0xC0FFEE01, I, R, True, ip_bytes(self.GW))
        m = Maker(k, rate=5, burst=2)
        self.assertEqual(self.flood_then_gateway(m), [True, True, False])

    def test_a_gateway_learnt_from_a_new_sa_and_forgotten_with_it(self):
        m = Maker(MemoryKeys([S1]), rate=5, burst=2)
        i2, r2 = spis(9)
        m.ike_up(i2, r2, True, self.GW, [0xC0FFEE02])
        self.assertEqual(m.gateways, {ip_bytes(self.GW)})
        m.ike_gone(i2, r2, True)
        self.assertEqual(m.gateways, set())

    def test_without_a_known_gateway_one_bucket_serves_everyone(self):
        m = Maker(MemoryKeys([S1]), rate=5, burst=2)
        self.assertEqual(self.flood_then_gateway(m), [False, False, False])

    def test_esp_answers_use_the_lanes_too(self):
        k = MemoryKeys([S1])
        k.child_put(0xC0FFEE01, I, R, True, ip_bytes(self.GW))
        m = Maker(k, rate=5, burst=1)
        esp = b"\xc0\xff\xee\x01" + bytes(20)
        self.assertIsNotNone(m.answer_esp(esp, 0, "198.51.100.7"))
        self.assertIsNone(m.answer_esp(esp, 0, "198.51.100.7"))
        self.assertIsNotNone(m.answer_esp(esp, 0, self.GW))


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


def first_qcd_token(datagram):
    """A taker that reads only the first N(QCD) of an unprotected answer
    (issue 11: Rockhopper does), written here from the bytes (RFC 7296
    §3.1, §3.2, §3.10), not with qcd.wire: the token of the first Notify
    payload of type QUICK_CRASH_DETECTION (16419), or None."""
    if len(datagram) < 28:
        return None
    nxt, pos = datagram[16], 28
    while nxt != 0 and pos + 4 <= len(datagram):
        ln = (datagram[pos + 2] << 8) | datagram[pos + 3]
        if ln < 4 or pos + ln > len(datagram):
            return None
        if nxt == 41 and ln >= 8:  # N: protocol id, SPI size, notify type
            spi_size = datagram[pos + 5]
            if (datagram[pos + 6] << 8) | datagram[pos + 7] == 16419:
                return bytes(datagram[pos + 8 + spi_size : pos + ln])
        nxt, pos = datagram[pos], pos + ln
    return None


def answers(out):
    return list(out) if isinstance(out, tuple) else [out]


class TestRolloverAnswersForTakersReadingOnlyTheFirstToken(unittest.TestCase):
    # The device made the IKE SA (and handed its token over) with secret S1,
    # then rolled over to S2, then lost its power: the answer for that SA
    # must lead with the S1 token; for an SA made after the rollover, with S2.

    def setUp(self):
        self.keys = MemoryKeys([S1])
        m = Maker(self.keys, rate=None)
        self.I2, self.R2 = spis(9)
        m.handover(I, R, "192.0.2.1")
        m.child_up(0x1001, I, R, True, "192.0.2.1")
        self.keys.rollover(S2)
        m.handover(self.I2, self.R2, "192.0.2.1")
        m.child_up(0x1002, self.I2, self.R2, True, "192.0.2.1")
        self.m = Maker(self.keys, rate=None)  # after the reboot: RAM gone, keys kept

    def test_the_ike_answer_leads_with_the_token_the_peer_holds(self):
        a = self.m.answer_ike(wire.parse(req()), "192.0.2.1", 0)
        self.assertIsInstance(a, bytes)  # one answer: the generation is known
        self.assertEqual(first_qcd_token(a), make_token(S1, I, R))
        # both tokens are still there, for takers that compare them all
        self.assertEqual(len([n for n in wire.parse(a).notifies() if n[0] == wire.QUICK_CRASH_DETECTION]), 2)
        b = self.m.answer_ike(wire.parse(wire.build(self.I2, self.R2, wire.INFORMATIONAL, wire.FLAG_I, 1, [(wire.PT_SK, bytes(32))])), "192.0.2.1", 0)
        self.assertEqual(first_qcd_token(b), make_token(S2, self.I2, self.R2))
        self.assertEqual(self.m.counters["answered_unknown_gen"], 0)

    def test_the_esp_answer_leads_with_the_token_the_peer_holds(self):
        a = self.m.answer_esp(b"\x00\x00\x10\x01" + bytes(40), 0)
        self.assertEqual(first_qcd_token(a), make_token(S1, I, R))
        b = self.m.answer_esp(b"\x00\x00\x10\x02" + bytes(40), 0)
        self.assertEqual(first_qcd_token(b), make_token(S2, self.I2, self.R2))

    def test_an_sa_the_map_does_not_know_gets_an_answer_the_taker_can_read(self):
        I3, R3 = spis(11)  # made with S1 before the rollover; no Child SA mapped
        held = make_token(S1, I3, R3)
        out = self.m.answer_ike(wire.parse(wire.build(I3, R3, wire.INFORMATIONAL, wire.FLAG_I, 1, [(wire.PT_SK, bytes(32))])), "192.0.2.1", 0)
        self.assertEqual([first_qcd_token(a) == held for a in answers(out)], [False, True])

    def test_the_first_token_reader_can_say_no(self):
        # The test taker is only worth something if it refuses a wrong lead.
        keys = MemoryKeys([S2, S1])
        a = wire.answer_invalid_ike_spi(wire.parse(req()), [make_token(S2, I, R), make_token(S1, I, R)])
        self.assertNotEqual(first_qcd_token(a), make_token(S1, I, R))
        self.assertEqual(first_qcd_token(a), make_token(S2, I, R))
        self.assertEqual(keys.generation_of(I, R), 0)


class TestConfiguration(unittest.TestCase):
    def test_rejects_bad_style_and_protocol_id(self):
        with self.assertRaises(ValueError):
            Maker(MemoryKeys([S1]), style=7)
        with self.assertRaises(ValueError):
            Maker(MemoryKeys([S1]), protocol_id=256)


class TestNewTokenForAMappedSa(unittest.TestCase):
    def test_a_new_token_after_a_rollover_moves_the_sas_generation_in_the_map(self):
        # §5.2: an address change hands a new token over (made with the
        # current secret); the map must then name that generation.
        keys = MemoryKeys([S1])
        m = Maker(keys, style=STYLE_ADDR, rate=None)
        m.handover(I, R, "192.0.2.1")
        m.child_up(0x1001, I, R, True, "192.0.2.1")
        self.assertEqual(keys.generation_of(I, R), 1)
        keys.rollover(S2)
        m.handover(I, R, "192.0.2.7")
        self.assertEqual(keys.generation_of(I, R), 2)

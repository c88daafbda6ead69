# qcd.hook: the notify hook an IKE engine calls, maker and taker together.
import unittest

from portable_util import SA, det_bytes, spis
from qcd import hook, wire
from qcdhost.keys import MemoryKeys
from qcd.tokens import fingerprint, ip_bytes, make_token

S = det_bytes(200, 32)
I, R = spis(20)
PEER = ("192.0.2.1", 500)
DEV = ("192.0.2.2", 500)


def device(keys=None, **kw):
    kw.setdefault("rate", None)
    return hook.QcdHook(hook.MAKER, keys or MemoryKeys([S]), **kw)


def gateway(**kw):
    return hook.QcdHook(hook.TAKER, **kw)


def stale_request(msg_id=9):
    return wire.build(I, R, wire.INFORMATIONAL, wire.FLAG_I, msg_id, [(wire.PT_SK, bytes(48))])


D_SA = SA(I, R, True, PEER)  # the device's view: it initiated
G_SA = SA(I, R, False, DEV)  # the gateway's
TOKEN = [(wire.QUICK_CRASH_DETECTION, 1, make_token(S, I, R))]


class TestMessagesWeBuild(unittest.TestCase):
    def test_initiator_hands_its_token_over_in_the_auth_request(self):
        d = device()
        self.assertEqual(d.auth_request(D_SA, 0), TOKEN)
        self.assertEqual(d.ike_up(D_SA, [], [], 0), [])  # nothing for a response

    def test_responder_hands_its_token_over_in_the_auth_response(self):
        d = device()
        self.assertEqual(d.ike_up(SA(I, R, False, PEER), [], [], 0), TOKEN)

    def test_rekey_carries_a_token_from_whichever_side_initiated(self):
        d = device()
        i2, r2 = spis(23)
        self.assertEqual(len(d.rekey_response(SA(i2, r2, False, PEER), 0)), 1)
        self.assertEqual(len(d.ike_rekey(D_SA, SA(i2, r2, True, PEER), [], 0)), 1)
        self.assertEqual(d.ike_rekey(D_SA, SA(i2, r2, False, PEER), [], 0), [])  # went in the response

    def test_address_change_only_matters_for_style_5_2(self):
        self.assertEqual(device().address_changed(D_SA, 0), [])
        d = device(style=2)
        self.assertEqual(d.address_changed(D_SA, 0)[0][2], make_token(S, I, R, ip_bytes(PEER[0])))

    def test_taker_only_adds_nothing(self):
        g = gateway()
        self.assertEqual(g.auth_request(D_SA, 0), [])
        self.assertEqual(g.ike_up(G_SA, [], [], 0), [])
        self.assertEqual(g.rekey_response(G_SA, 0), [])


class TestRebootStory(unittest.TestCase):
    """The RFC 6290 §3 sequence, through the hook surface only."""

    def test_stale_sa_is_deleted_after_the_device_reboots(self):
        keys = MemoryKeys([S])
        d, g = device(keys), gateway()
        d.ike_created(D_SA, 0)
        ns = d.auth_request(D_SA, 0)
        g.ike_up(G_SA, ns, [], 0)
        d.ike_up(D_SA, [], [], 0)
        # While the SA lives, the device never answers for it (§9.2).
        self.assertIsNone(d.unknown_ike_spi(stale_request(), PEER, 10))
        # Reboot: same key source (it lives in flash), new hook.
        d2 = device(keys)
        ans = d2.unknown_ike_spi(stale_request(), PEER, 20)
        self.assertIsNotNone(ans)
        self.assertTrue(g.unprotected(ans, PEER, G_SA, 30))
        self.assertEqual(g.status()["taker"]["verified"], 1)

    def test_esp_answer_from_the_child_map(self):
        keys = MemoryKeys([S])
        d, g = device(keys), gateway()
        g.ike_up(G_SA, d.auth_request(D_SA, 0), [], 0)
        d.ike_up(D_SA, [], [0xCAFE0001], 0)
        self.assertEqual(keys.child_count(), 1)
        d2 = device(keys)
        ans = d2.unknown_esp_spi(b"\xca\xfe\x00\x01" + bytes(40), ("192.0.2.1", 4500), 5)
        self.assertTrue(g.unprotected(ans, ("192.0.2.1", 4500), G_SA, 6))

    def test_child_delete_drops_the_mapping(self):
        keys = MemoryKeys([S])
        d = device(keys)
        d.child_up(D_SA, 0xCAFE0001, 0)
        d.child_down(D_SA, 0xCAFE0001, 0)
        self.assertEqual(keys.child_count(), 0)

    def test_new_ike_sa_with_the_peer_prunes_stale_mappings(self):
        keys = MemoryKeys([S])
        keys.child_put(0xAAAA0001, I, R, True, ip_bytes(PEER[0]))  # from before the reboot
        keys.child_put(0xAAAA0002, I, R, True, ip_bytes("198.51.100.1"))  # another peer
        d = device(keys)
        i2, r2 = spis(21)
        d.ike_up(SA(i2, r2, True, PEER), [], [0xBBBB0001], 0)
        self.assertIsNone(keys.child_get(0xAAAA0001))
        self.assertTrue(keys.child_get(0xAAAA0002) is not None)
        self.assertTrue(keys.child_get(0xBBBB0001) is not None)

    def test_rekey_moves_the_map_and_both_sas_stay_held_until_the_old_one_ends(self):
        keys = MemoryKeys([S])
        d, g = device(keys), gateway()
        i2, r2 = spis(22)
        new_d, new_g = SA(i2, r2, True, PEER), SA(i2, r2, False, DEV)
        g.ike_up(G_SA, d.auth_request(D_SA, 0), [], 0)
        d.ike_up(D_SA, [], [0xCAFE0001], 0)
        ns = d.ike_rekey(D_SA, new_d, [], 1)  # we initiated: our token for the INFORMATIONAL
        g.ike_rekey(G_SA, new_g, [], 1)
        g.protected(new_g, wire.INFORMATIONAL, ns, 1)
        self.assertEqual(keys.child_get(0xCAFE0001)[0:2], (i2, r2))
        # §9.2: the peer may still use the old SA until it reads our answer
        self.assertEqual(d.maker.held, {I, i2})
        self.assertTrue(g.taker.has(I, R) and g.taker.has(i2, r2))
        d.ike_down(D_SA, 2)
        g.ike_down(G_SA, 2)
        self.assertEqual(d.maker.held, {i2})
        self.assertEqual(keys.child_count(), 1)
        self.assertFalse(g.taker.has(I, R))
        self.assertTrue(g.taker.has(i2, r2))

    def test_delete_forgets(self):
        d, g = device(), gateway()
        g.ike_up(G_SA, d.auth_request(D_SA, 0), [], 0)
        d.ike_up(D_SA, [], [0xCAFE0001], 0)
        g.ike_down(G_SA, 5)
        d.ike_down(D_SA, 5)
        self.assertEqual(len(g.taker), 0)
        self.assertEqual(len(d.maker.held), 0)
        self.assertEqual(d.keys.child_count(), 0)  # its Child SAs went with it

    def test_a_verdict_keeps_the_token_until_the_sa_ends(self):
        keys = MemoryKeys([S])
        g = gateway()
        g.ike_up(G_SA, device(keys).auth_request(D_SA, 0), [], 0)
        ans = device(keys).unknown_ike_spi(stale_request(), PEER, 1)
        self.assertTrue(g.unprotected(ans, PEER, G_SA, 2))
        self.assertTrue(g.taker.has(I, R))  # judging removes nothing
        g.ike_down(G_SA, 3)  # the engine deletes the SA
        self.assertFalse(g.taker.has(I, R))


class TestWalls(unittest.TestCase):
    def test_garbage_everywhere_yields_nothing_and_no_error(self):
        d, g = device(), gateway()
        both = hook.QcdHook(hook.MAKER | hook.TAKER, MemoryKeys([S]))
        junk = [b"", b"\x00", bytes(28), b"\xff" * 64, stale_request()[:40], None, 12, "text"]
        for h in (d, g, both):
            for j in junk:
                self.assertIsNone(h.unknown_ike_spi(j, PEER, 0))
                self.assertFalse(h.unprotected(j, PEER, G_SA, 0))
                self.assertIsNone(h.unknown_esp_spi(j, PEER, 0))
                h.protected(G_SA, wire.INFORMATIONAL, [(wire.QUICK_CRASH_DETECTION, 1, j)], 0)
        # Non-bytes arguments are bugs in the caller: counted, never raised.
        self.assertTrue(d.internal_errors + g.internal_errors > 0)

    def test_a_protected_qcd_notify_is_never_a_delete(self):
        g = gateway()
        g.ike_up(G_SA, [(wire.QUICK_CRASH_DETECTION, 1, det_bytes(1, 32))], [], 0)
        g.protected(G_SA, wire.INFORMATIONAL, [(wire.QUICK_CRASH_DETECTION, 1, det_bytes(1, 32))], 0)
        self.assertTrue(g.taker.has(I, R))

    def test_taker_counts_tokens_for_unknown_sas(self):
        g = gateway()
        d = device()
        ans = d.unknown_ike_spi(stale_request(), PEER, 0)
        self.assertIsNone(g.unknown_ike_spi(ans, PEER, 0))
        self.assertEqual(g.status()["taker"]["unknown_sa"], 1)

    def test_the_configured_gateway_has_its_own_lane_through_the_hook(self):
        d = device(rate=5, burst=1, gateways=[PEER[0]])
        self.assertIsNotNone(d.unknown_ike_spi(stale_request(1), ("198.51.100.1", 500), 0))
        self.assertIsNone(d.unknown_ike_spi(stale_request(2), ("198.51.100.2", 500), 0))
        self.assertIsNotNone(d.unknown_ike_spi(stale_request(3), PEER, 0))

    def test_maker_needs_keys(self):
        with self.assertRaises(ValueError):
            hook.QcdHook(hook.MAKER)


class TestNoSecretShown(unittest.TestCase):
    def test_status_repr_and_logs_show_fingerprints_only(self):
        lines = []
        keys = MemoryKeys([S])
        d = device(keys, log=lines.append)
        d.auth_request(D_SA, 0)
        d.unknown_ike_spi(stale_request(), PEER, 0)
        text = repr(d) + str(d.status()) + repr(keys) + str(keys) + "\n".join(lines)
        self.assertIn(fingerprint(S), str(d.status()))
        for secret_form in (S.hex(), repr(S), str(S), make_token(S, I, R).hex()):
            self.assertFalse(secret_form in text)

    def test_bad_secret_error_does_not_echo_it(self):
        bad = det_bytes(3, 31)
        try:
            MemoryKeys([bad])
        except ValueError as e:
            self.assertFalse(bad.hex() in str(e))
            self.assertFalse(repr(bad) in str(e))
        else:
            self.fail("31-byte secret accepted")

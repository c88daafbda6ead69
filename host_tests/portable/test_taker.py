# qcd.taker: storing the peer's token and judging unprotected answers.
import unittest

from portable_util import det_bytes, spis
from qcd import wire
from qcd.taker import Taker

I, R = spis(7)
TOK = det_bytes(70, 32)


def answer(tokens, spi_i=I, spi_r=R, invalid=wire.INVALID_IKE_SPI, protected=False):
    if protected:
        return wire.build(spi_i, spi_r, wire.INFORMATIONAL, wire.FLAG_R, 1, [(wire.PT_SK, bytes(32))])
    pl = []
    if invalid:
        pl.append((wire.PT_N, wire.notify_body(invalid, b"\x00\x00\x10\x00" if invalid == wire.INVALID_SPI else b"")))
    for t in tokens:
        pl.append((wire.PT_N, wire.notify_body(wire.QUICK_CRASH_DETECTION, t, 1)))
    return wire.build(spi_i, spi_r, wire.INFORMATIONAL, wire.FLAG_R, 1, pl)


def taker_with_token(**kw):
    t = Taker(**kw)
    t.learn(I, R, [(wire.QUICK_CRASH_DETECTION, 1, TOK)])
    return t


class TestLearn(unittest.TestCase):
    def test_stores_then_replaces(self):
        t = taker_with_token()
        self.assertTrue(t.has(I, R))
        t.learn(I, R, [(wire.QUICK_CRASH_DETECTION, 0, b"", det_bytes(71, 64))])  # 4-tuple form
        self.assertEqual((t.counters["stored"], t.counters["replaced"], len(t)), (1, 1, 1))
        self.assertFalse(t.judge(wire.parse(answer([TOK]))))
        self.assertTrue(t.judge(wire.parse(answer([det_bytes(71, 64)]))))

    def test_refuses_tokens_outside_16_to_128_octets(self):
        t = Taker()
        self.assertIsNone(t.learn(I, R, [(wire.QUICK_CRASH_DETECTION, 1, bytes(15))]))
        self.assertIsNone(t.learn(I, R, [(wire.QUICK_CRASH_DETECTION, 1, bytes(129))]))
        self.assertFalse(t.has(I, R))
        self.assertEqual(t.counters["refused_bad_length"], 2)
        self.assertEqual(t.learn(I, R, [(wire.QUICK_CRASH_DETECTION, 1, bytes(16))]), "stored")
        self.assertEqual(t.learn(I, R, [(wire.QUICK_CRASH_DETECTION, 1, bytes(128))]), "replaced")

    def test_ignores_other_notifies(self):
        t = Taker()
        self.assertIsNone(t.learn(I, R, [(wire.INITIAL_CONTACT, 0, b"")]))
        self.assertEqual(len(t), 0)

    def test_forget(self):
        t = taker_with_token()
        self.assertTrue(t.forget(I, R))
        self.assertFalse(t.forget(I, R))
        self.assertFalse(t.judge(wire.parse(answer([TOK]))))
        self.assertEqual(t.counters["no_token"], 1)


class TestVerify(unittest.TestCase):
    def test_match_means_delete_and_judging_changes_no_token(self):
        # The token goes when the SA ends (forget, from the engine's
        # ike_down), not when it is judged.
        t = taker_with_token()
        self.assertTrue(t.judge(wire.parse(answer([TOK]))))
        self.assertEqual(t.counters["verified"], 1)
        self.assertTrue(t.has(I, R))
        t.forget(I, R)
        self.assertFalse(t.judge(wire.parse(answer([TOK]))))  # a replay finds nothing

    def test_invalid_spi_form_of_section_8_2(self):
        self.assertTrue(taker_with_token().judge(wire.parse(answer([TOK], invalid=wire.INVALID_SPI))))

    def test_any_of_several_candidates_may_match(self):
        self.assertTrue(taker_with_token().judge(wire.parse(answer([det_bytes(1, 32), TOK]))))

    def test_mismatch_changes_nothing(self):
        t = taker_with_token()
        self.assertFalse(t.judge(wire.parse(answer([det_bytes(1, 32)]))))
        self.assertFalse(t.judge(wire.parse(answer([TOK[:-1] + bytes([TOK[-1] ^ 1])]))))
        self.assertEqual(t.counters["mismatch"], 2)
        self.assertTrue(t.has(I, R))

    def test_token_for_another_sa_does_not_match(self):
        t = taker_with_token()
        i2, r2 = spis(8)
        t.learn(i2, r2, [(wire.QUICK_CRASH_DETECTION, 1, det_bytes(80, 32))])
        self.assertFalse(t.judge(wire.parse(answer([det_bytes(80, 32)]))))  # header names I/R
        self.assertTrue(t.has(i2, r2) and t.has(I, R))

    def test_qcd_without_invalid_notify_never_deletes(self):
        t = taker_with_token()
        self.assertFalse(t.judge(wire.parse(answer([TOK], invalid=None))))
        self.assertEqual(t.counters["ignored_no_qcd"], 1)
        self.assertTrue(t.has(I, R))

    def test_invalid_notify_without_qcd_never_deletes(self):
        t = taker_with_token()
        self.assertFalse(t.judge(wire.parse(answer([]))))
        self.assertTrue(t.has(I, R))

    def test_oversize_candidate_is_not_compared(self):
        t = Taker()
        big = det_bytes(9, 129)
        t.learn(I, R, [(wire.QUICK_CRASH_DETECTION, 1, big[:128])])
        self.assertFalse(t.judge(wire.parse(answer([big]))))
        self.assertTrue(t.has(I, R))

    def test_protected_and_malformed_never_delete(self):
        t = taker_with_token()
        self.assertFalse(t.judge(wire.parse(answer([TOK], protected=True))))
        self.assertFalse(t.judge(wire.parse(answer([TOK])[:-1])))
        self.assertEqual((t.counters["ignored_protected"], t.counters["ignored_malformed"]), (1, 1))
        self.assertTrue(t.has(I, R))

    def test_accepts_from_any_address_by_default_section_3(self):
        self.assertTrue(taker_with_token().judge(wire.parse(answer([TOK])), "198.51.100.9", "192.0.2.1"))

    def test_restrict_to_peer_option(self):
        t = taker_with_token(restrict_to_peer=True)
        self.assertFalse(t.judge(wire.parse(answer([TOK])), "198.51.100.9", "192.0.2.1"))
        self.assertEqual(t.counters["refused_address"], 1)
        self.assertTrue(t.judge(wire.parse(answer([TOK])), "192.0.2.1", "192.0.2.1"))

    def test_unknown_sa_counts_only_qcd_answers(self):
        t = Taker()
        self.assertTrue(t.unknown(wire.parse(answer([TOK]))))
        self.assertFalse(t.unknown(wire.parse(answer([]))))
        self.assertFalse(t.unknown(wire.parse(answer([TOK], protected=True))))
        self.assertFalse(t.unknown(None))
        self.assertEqual(t.counters["unknown_sa"], 1)


class TestTable(unittest.TestCase):
    def test_many_sas_grow_and_shrink(self):
        t = Taker()
        pairs = [spis(1000 + k) for k in range(40)]
        for k in range(40):
            t.learn(pairs[k][0], pairs[k][1], [(wire.QUICK_CRASH_DETECTION, 1, det_bytes(k, 32))])
        self.assertEqual(len(t), 40)
        for k in range(0, 40, 2):
            self.assertTrue(t.forget(pairs[k][0], pairs[k][1]))
        self.assertEqual(len(t), 20)
        for k in range(40):
            ok = t.judge(wire.parse(answer([det_bytes(k, 32)], pairs[k][0], pairs[k][1])))
            self.assertEqual(ok, k % 2 == 1, k)
            if ok:
                t.forget(pairs[k][0], pairs[k][1])
        self.assertEqual(len(t), 0)
        # Nothing of a forgotten entry is left in the table.
        self.assertEqual(bytes(t._tab), bytes(len(t._tab)))

    def test_misaligned_key_bytes_do_not_match(self):
        # A digest that happens to contain another SA's SPI bytes must not be
        # found as that SA's entry.
        t = Taker()
        i2, r2 = spis(9)
        t._tab[0:16] = i2 + r2  # place it where only an aligned key may sit...
        t._tab[16:48] = bytes(32)
        t._n = 0  # ...but outside the live entries
        self.assertFalse(t.has(i2, r2))

# ike.x25519: the hand-written X25519 (RFC 7748) against RFC 7748's vectors,
# the base point's comb against the ladder, and group 31 through ike.dh
# (RFC 8031 checks). On CPython ike.dh goes through `cryptography`;
# ike.x25519 is the ladder (and the comb for u = 9) everywhere, and on
# MicroPython ike.dh uses it too. host_tests/test_ike_x25519.py adds the
# 1,000-iteration vector, the comb's table and `cryptography` as an oracle.
import unittest

from ike import crypto, dh, x25519, x25519_comb
from ike.const import CURVE25519
from portable_util import det_bytes

h = bytes.fromhex

# RFC 7748 §5.2: (scalar, u-coordinate, output)
VECTORS = (
    (
        "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
        "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
    ),
    (
        "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
        "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
        "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
    ),
)
# RFC 7748 §6.1: Alice and Bob
ALICE = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
ALICE_PUB = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
BOB = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"
BOB_PUB = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
SHARED = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
# u-coordinates of small order (RFC 7748 §6.1 "check ... all-zero"): 0, 1,
# p-1, and p and p+1 (non-canonical encodings of 0 and 1).
P = x25519.P
LOW_ORDER = [n.to_bytes(32, "little") for n in (0, 1, P - 1, P, P + 1)]


class TestRfc7748(unittest.TestCase):
    def test_rfc7748_function_vectors(self):
        for k, u, out in VECTORS:
            self.assertEqual(x25519.x25519(h(k), h(u)).hex(), out)

    def test_rfc7748_one_iteration(self):
        k = u = b"\x09" + bytes(31)
        k, u = x25519.x25519(k, u), k
        self.assertEqual(k.hex(), "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079")

    def test_rfc7748_diffie_hellman_alice_and_bob(self):
        self.assertEqual(x25519.public_key(h(ALICE)).hex(), ALICE_PUB)
        self.assertEqual(x25519.public_key(h(BOB)).hex(), BOB_PUB)
        self.assertEqual(x25519.x25519(h(ALICE), h(BOB_PUB)).hex(), SHARED)
        self.assertEqual(x25519.x25519(h(BOB), h(ALICE_PUB)).hex(), SHARED)

    def test_top_bit_of_u_is_ignored(self):
        k, u, out = VECTORS[0]
        u2 = bytearray(h(u))
        u2[31] |= 0x80
        self.assertEqual(x25519.x25519(h(k), bytes(u2)).hex(), out)

    def test_base_point_comb_gives_what_the_ladder_gives(self):
        # u = 9 takes the comb (ike.x25519_comb); the ladder at u = 9 is
        # RFC 7748's own method: both on this platform's integers.
        for n in range(3):
            kb = x25519._scalar(det_bytes(20 + n, 32))
            self.assertEqual(x25519._last(x25519_comb.slices(kb)), x25519._ladder(kb, 9))

    def test_low_order_points_give_all_zero(self):
        k = det_bytes(1, 32)
        for u in LOW_ORDER:
            self.assertEqual(x25519.x25519(k, u), bytes(32))

    def test_wrong_lengths_are_refused(self):
        with self.assertRaises(ValueError):
            x25519.x25519(bytes(31), bytes(32))
        with self.assertRaises(ValueError):
            x25519.x25519(bytes(32), bytes(33))


class TestGroup31(unittest.TestCase):
    def test_both_sides_agree_and_public_value_is_32_octets(self):
        n = [0]

        def rng(k):
            n[0] += 1
            return det_bytes(100 + n[0], k)

        a = dh.KeyPair(CURVE25519, rng)
        b = dh.KeyPair(CURVE25519, rng)
        self.assertEqual(len(a.public), 32)
        self.assertEqual(dh.public_len(CURVE25519), 32)
        s = a.shared(b.public)
        self.assertEqual(s, b.shared(a.public))
        self.assertEqual(len(s), 32)
        self.assertEqual(s, x25519.x25519(a._x, b.public))

    def test_rfc7748_alice_and_bob_through_dh(self):
        a = dh.KeyPair(CURVE25519, lambda k: h(ALICE))
        self.assertEqual(a.public.hex(), ALICE_PUB)
        self.assertEqual(a.shared(h(BOB_PUB)).hex(), SHARED)

    def test_bad_peer_values_give_none_never_an_exception(self):
        # RFC 8031 §2.2: wrong length or an all-zero shared secret.
        a = dh.KeyPair(CURVE25519, lambda k: det_bytes(7, k))
        for bad in [b"", bytes(31), bytes(33), bytes(256)] + LOW_ORDER:
            self.assertEqual(a.shared(bad), None)


class Counter:
    # an rng that says what it gave
    def __init__(self, seed):
        self.seed = seed
        self.given = []

    def __call__(self, k):
        b = det_bytes(self.seed + len(self.given), k)
        self.given.append(b)
        return b


def prepare_all(rng, groups=None, keep=1):
    n = 0
    while dh.prepare(rng, groups, keep):
        n += 1
    return n


class TestKeyPairsAhead(unittest.TestCase):
    def setUp(self):
        crypto._ahead[:] = []
        crypto._job[:] = []
        crypto._stalled[:] = []

    tearDown = setUp

    def test_a_prepared_pair_is_taken_once_by_the_next_key_pair(self):
        rng = Counter(300)
        self.assertTrue(prepare_all(rng) > 0)
        self.assertEqual(dh.ready(rng), 1)
        self.assertFalse(dh.prepare(rng))  # one is kept ready, no more
        a = dh.KeyPair(CURVE25519, rng)
        self.assertEqual(a._x, rng.given[0])
        self.assertEqual(a.public, x25519.public_key(a._x))
        self.assertEqual(dh.ready(rng), 0)
        b = dh.KeyPair(CURVE25519, rng)  # none ready: made now, fresh
        self.assertEqual(b._x, rng.given[1])
        self.assertNotEqual(a._x, b._x)
        self.assertEqual(a.shared(b.public), b.shared(a.public))

    def test_without_group_31_nothing_is_prepared(self):
        rng = Counter(310)
        self.assertFalse(dh.prepare(rng, [14]))
        self.assertEqual((dh.ready(rng), rng.given), (0, []))
        self.assertTrue(dh.prepare(rng, [14, CURVE25519]))

    def test_a_pair_is_taken_only_with_the_rng_that_made_it(self):
        mine, other = Counter(320), Counter(330)
        prepare_all(mine)
        a = dh.KeyPair(CURVE25519, other)
        self.assertEqual(a._x, other.given[0])
        self.assertEqual(dh.ready(mine), 1)
        self.assertEqual(dh.KeyPair(CURVE25519, mine)._x, mine.given[0])

    def test_a_half_made_pair_is_finished_by_the_key_pair_that_needs_it(self):
        rng = Counter(340)
        self.assertTrue(dh.prepare(rng))
        if crypto._x25519 is None:  # the hand-written X25519: in slices
            self.assertTrue(dh.prepare(rng))
            self.assertEqual(dh.ready(rng), 0)
        a = dh.KeyPair(CURVE25519, rng)
        self.assertEqual(a._x, rng.given[0])
        self.assertEqual(a.public, x25519.public_key(a._x))
        self.assertEqual(len(rng.given), 1)
        self.assertEqual((dh.ready(rng), crypto._job), (0, []))

    def test_keep_two_holds_two_different_pairs(self):
        rng = Counter(350)
        prepare_all(rng, None, 2)
        self.assertEqual(dh.ready(rng), 2)
        a, b = dh.KeyPair(CURVE25519, rng), dh.KeyPair(CURVE25519, rng)
        self.assertEqual((a._x, b._x), (rng.given[0], rng.given[1]))

    def test_public_key_in_slices_gives_what_public_key_gives(self):
        k = det_bytes(360, 32)
        out = list(x25519.public_key_slices(k))
        self.assertTrue(len(out) > 4)
        self.assertEqual(out[:-1], [None] * (len(out) - 1))
        self.assertEqual(out[-1], x25519.public_key(k))

    def test_without_the_comb_the_ladder_makes_the_public_value(self):
        # what a deploy that leaves ike.x25519_comb off runs
        k = det_bytes(370, 32)
        want = x25519.public_key(k)
        saved = x25519._base[:]
        x25519._base[:] = [None]
        try:
            out = list(x25519.public_key_slices(k))
            self.assertEqual(out[-1], want)
            self.assertTrue(len(out) > 4)
            self.assertEqual(x25519.x25519(k, b"\x09" + bytes(31)), want)
        finally:
            x25519._base[:] = saved


if __name__ == "__main__":
    unittest.main()

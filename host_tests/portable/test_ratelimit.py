# qcd.ratelimit: the token bucket in front of unprotected answers.
import unittest

from qcd.ratelimit import Lanes, TokenBucket


class TestTokenBucket(unittest.TestCase):
    def test_burst_then_refuse(self):
        b = TokenBucket(rate=5, burst=3)
        self.assertEqual([b.allow(0) for _ in range(5)], [True, True, True, False, False])

    def test_refills_at_rate(self):
        b = TokenBucket(rate=5, burst=3)
        for _ in range(3):
            b.allow(0)
        self.assertFalse(b.allow(100))  # 0.5 answer earned
        self.assertTrue(b.allow(200))  # 1 answer earned at 5/s
        self.assertFalse(b.allow(200))

    def test_never_exceeds_burst_after_idle(self):
        b = TokenBucket(rate=5, burst=2)
        b.allow(0)
        got = [b.allow(10000000) for _ in range(4)]
        self.assertEqual(got, [True, True, False, False])

    def test_clock_going_backwards_earns_nothing(self):
        b = TokenBucket(rate=1, burst=1)
        self.assertTrue(b.allow(5000))
        self.assertFalse(b.allow(0))
        self.assertFalse(b.allow(5500))
        self.assertTrue(b.allow(6000))

    def test_rejects_nonsense_configuration(self):
        for rate, burst in ((0, 1), (-1, 1), (1, 0)):
            with self.assertRaises(ValueError):
                TokenBucket(rate, burst)
class TestLanes(unittest.TestCase):
    def test_other_sources_never_empty_the_known_lane(self):
        lanes = Lanes(rate=5, burst=2)
        self.assertEqual([lanes.allow(0, False) for _ in range(4)], [True, True, False, False])
        self.assertEqual([lanes.allow(0, True) for _ in range(3)], [True, True, False])

    def test_each_lane_refills_on_its_own(self):
        lanes = Lanes(rate=5, burst=1)
        self.assertTrue(lanes.allow(0, True))
        self.assertTrue(lanes.allow(0, False))
        self.assertFalse(lanes.allow(100, True))
        self.assertTrue(lanes.allow(200, True))
        self.assertTrue(lanes.allow(200, False))



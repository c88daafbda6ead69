# qcd.ratelimit: the token bucket in front of unprotected answers.
import unittest

from qcd.ratelimit import TokenBucket


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

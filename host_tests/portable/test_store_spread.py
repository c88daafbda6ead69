# qcd.store on qcdhost.emu.flash, six-block partitions under load: erases
# spread over every block, and stuck bits caught by the read-back, plain and
# encrypted. Runs on CPython and on MicroPython (split from
# test_store_wear.py: a board runs one test module per soft reset, and these
# two hold the largest partitions of the suite).
import unittest

from qcdhost.emu import flash as flashemu
from store_util import churn, fresh, reboot, same_map


class TestSpreadAndStuckBits(unittest.TestCase):
    def spread(self, enc):
        e, s = fresh(blocks=6, encrypted=enc)
        churn(s, 3000)
        counts = e.erase_counts
        self.assertTrue(min(counts) >= 1, counts)
        self.assertTrue(max(counts) - min(counts) <= 2, counts)
        self.assertTrue(s.log.compactions > 0)
        self.assertEqual(e.violations, 0)
        e, s2 = reboot(e)
        same_map(self, s, s2)

    def test_erases_spread_over_every_block(self):
        # One partition at a time on a board's heap: each in its own call,
        # so the first is garbage (no stale slot of this frame holds it).
        self.spread(False)
        self.spread(True)

    def stuck(self, enc):
        e, s = fresh(blocks=6, encrypted=enc)
        sec = s.secrets()[0]
        e.wear_out(2, 1, flashemu.STUCK_BITS)  # erased once (blank), then worn
        e.wear_out(4, 2, flashemu.STUCK_BITS)
        churn(s, 1500, live=15)
        self.assertTrue(s.log.write_errors > 0)
        e, s2 = reboot(e)
        self.assertEqual(s2.secrets()[0], sec)
        same_map(self, s, s2)
        self.assertEqual(e.violations, 0)

    def test_stuck_bits_are_caught_by_the_read_back(self):
        self.stuck(False)
        self.stuck(True)


if __name__ == "__main__":
    unittest.main()

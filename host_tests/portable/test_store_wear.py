# qcd.store on qcdhost.emu.flash under wear: how it spreads erases, keeps
# RAM bounded, moves long-lived entries with compaction, reads the partition
# at most once to mount, and copes with blocks that fail to erase, stuck
# bits and a worn-out partition. Runs on CPython and on MicroPython (split
# from test_store.py: a board runs one test module per soft reset, and these
# tests hold a 4 to 6 block partition under load, so they get the heap
# without the rest of the store's tests loaded).
import unittest

from qcdhost.emu import flash as flashemu
from qcdhost.emu.flash import BLOCK_SIZE
from qcd.store import Store
from store_util import D_ERASE, I1, I2, IP4, IP6, R1, R2, Rng, fresh, reboot


class TestWearAndCompaction(unittest.TestCase):
    def same_map(self, s, s2):
        """s2 holds exactly s's map (entry by entry: no sorted copies of two
        maps on a board's heap)."""
        self.assertEqual(s2.child_count(), s.child_count())
        for spi, entry in s.children():
            self.assertEqual(s2.child_get(spi), entry)

    def churn(self, s, n, live=20, start=0):
        for i in range(start, start + n):
            s.child_put(1000 + i, I1 if i % 3 else I2, R1, True, IP4)
            if i - start >= live:
                s.child_drop(1000 + i - live)

    def spread(self, enc):
        e, s = fresh(blocks=6, encrypted=enc)
        self.churn(s, 3000)
        counts = e.erase_counts
        self.assertTrue(min(counts) >= 1, counts)
        self.assertTrue(max(counts) - min(counts) <= 2, counts)
        self.assertTrue(s.log.compactions > 0)
        self.assertEqual(e.violations, 0)
        e, s2 = reboot(e)
        self.same_map(s, s2)

    def test_erases_spread_over_every_block(self):
        # One partition at a time on a board's heap: each in its own call,
        # so the first is garbage (no stale slot of this frame holds it).
        self.spread(False)
        self.spread(True)

    def test_ram_stays_bounded_whatever_the_number_of_writes(self):
        e, s = fresh(blocks=4)
        self.churn(s, 4000, live=10)
        self.assertEqual(s.child_count(), 10)
        self.assertTrue(len(s._ike) <= 2)
        self.assertTrue(len(s.log.chain) <= 4)
        e, s = reboot(e)
        self.assertEqual(s.child_count(), 10)

    def test_long_lived_entries_move_with_compaction(self):
        e, s = fresh(blocks=4)
        s.child_put(1, I1, R1, True, IP6)
        s.child_put(2, I2, R2, False, IP4)
        self.churn(s, 2500, live=5)
        self.assertTrue(s.log.compactions >= 2)
        e, s = reboot(e)
        self.assertEqual(s.child_get(1), (I1, R1, True, IP6))
        self.assertEqual(s.child_get(2), (I2, R2, False, IP4))

    def test_mount_reads_the_partition_at_most_once(self):
        e, s = fresh(blocks=6)
        self.churn(s, 2000)
        e2 = e.reboot()
        s2 = Store(e2, Rng(), count_boot=False)
        self.assertTrue(s2.log.mount_read_bytes <= 6 * BLOCK_SIZE)
        self.assertEqual(e2.bytes_read, s2.log.mount_read_bytes)
        self.assertEqual(e2.programs + e2.erases, 0)

    def test_a_block_that_fails_to_erase_is_skipped(self):
        e, s = fresh(blocks=5)
        e.wear_out(2, e.erase_counts[2] + 1, flashemu.ERASE_FAILS)
        self.churn(s, 2000)
        self.assertTrue(s.log.write_errors > 0)
        self.assertTrue(any(d[0] == D_ERASE for d in s.log.damage))
        e, s2 = reboot(e)
        self.same_map(s, s2)

    def stuck(self, enc):
        e, s = fresh(blocks=6, encrypted=enc)
        sec = s.secrets()[0]
        e.wear_out(2, 1, flashemu.STUCK_BITS)  # erased once (blank), then worn
        e.wear_out(4, 2, flashemu.STUCK_BITS)
        self.churn(s, 1500, live=15)
        self.assertTrue(s.log.write_errors > 0)
        e, s2 = reboot(e)
        self.assertEqual(s2.secrets()[0], sec)
        self.same_map(s, s2)
        self.assertEqual(e.violations, 0)

    def test_stuck_bits_are_caught_by_the_read_back(self):
        self.stuck(False)
        self.stuck(True)

    def test_a_worn_out_partition_still_comes_up(self):
        e, s = fresh(blocks=4)
        sec = s.secrets()[0]
        for b in range(4):
            e.wear_out(b, 0, flashemu.ERASE_FAILS)
        with self.assertRaises(OSError):
            self.churn(s, 2000)
        e, s = reboot(e)
        self.assertEqual(s.secrets()[0], sec)
        self.assertTrue(s.status()["readonly"] != "no")


if __name__ == "__main__":
    unittest.main()

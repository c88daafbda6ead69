# qcd.store on qcdhost.emu.flash under wear: RAM bounded whatever the number
# of writes, long-lived entries moved by compaction, the partition read at
# most once to mount, a block that fails to erase, a worn-out partition.
# Runs on CPython and on MicroPython (split from test_store.py, and the
# six-block runs from here into test_store_spread.py: a board runs one test
# module per soft reset, so each gets the heap without the others loaded).
import unittest

from qcdhost.emu import flash as flashemu
from qcdhost.emu.flash import BLOCK_SIZE
from qcd.store import Store
from store_util import D_ERASE, I1, I2, IP4, IP6, R1, R2, Rng, churn, fresh, reboot, same_map


class TestWearAndCompaction(unittest.TestCase):
    def test_ram_stays_bounded_whatever_the_number_of_writes(self):
        e, s = fresh(blocks=4)
        churn(s, 4000, live=10)
        self.assertEqual(s.child_count(), 10)
        self.assertTrue(len(s._ike) <= 2)
        self.assertTrue(len(s.log.chain) <= 4)
        e, s = reboot(e)
        self.assertEqual(s.child_count(), 10)

    def test_long_lived_entries_move_with_compaction(self):
        e, s = fresh(blocks=4)
        s.child_put(1, I1, R1, True, IP6)
        s.child_put(2, I2, R2, False, IP4)
        churn(s, 2500, live=5)
        self.assertTrue(s.log.compactions >= 2)
        e, s = reboot(e)
        self.assertEqual(s.child_get(1), (I1, R1, True, IP6))
        self.assertEqual(s.child_get(2), (I2, R2, False, IP4))

    def test_mount_reads_the_partition_at_most_once(self):
        e, s = fresh(blocks=6)
        churn(s, 2000)
        e2 = e.reboot()
        s2 = Store(e2, Rng(), count_boot=False)
        self.assertTrue(s2.log.mount_read_bytes <= 6 * BLOCK_SIZE)
        self.assertEqual(e2.bytes_read, s2.log.mount_read_bytes)
        self.assertEqual(e2.programs + e2.erases, 0)

    def test_a_block_that_fails_to_erase_is_skipped(self):
        e, s = fresh(blocks=5)
        e.wear_out(2, e.erase_counts[2] + 1, flashemu.ERASE_FAILS)
        churn(s, 2000)
        self.assertTrue(s.log.write_errors > 0)
        self.assertTrue(any(d[0] == D_ERASE for d in s.log.damage))
        e, s2 = reboot(e)
        same_map(self, s, s2)

    def test_a_worn_out_partition_still_comes_up(self):
        e, s = fresh(blocks=4)
        sec = s.secrets()[0]
        for b in range(4):
            e.wear_out(b, 0, flashemu.ERASE_FAILS)
        with self.assertRaises(OSError):
            churn(s, 2000)
        e, s = reboot(e)
        self.assertEqual(s.secrets()[0], sec)
        self.assertTrue(s.status()["readonly"] != "no")


if __name__ == "__main__":
    unittest.main()

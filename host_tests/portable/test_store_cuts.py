# qcd.store under power cuts, on CPython and MicroPython: a workload is run
# once per cut point (every program and erase operation), the power cut
# there, and after the reboot the store must hold exactly what it had
# acknowledged (store_torture.py says what is checked). The long runs are
# host_tests/test_store_torture.py and `make torture`. Cuts on worn and
# unstable flash are in test_store_cuts_faulty.py, cuts at the map's cap in
# test_store_cuts_cap.py: a board runs one test module per soft reset, and
# each sweep needs most of a 110 KiB heap.
import unittest

from qcdhost.emu.flash import BLOCK_SIZE, FlashEmu, MemoryBacking, PowerCut
from portable_util import det_backing
from qcd.store import Store
from store_torture import det_rng, sweep


class TestPowerCuts(unittest.TestCase):
    def test_every_cut_of_a_workload_recovers_plain_flash(self):
        made = sweep(11, blocks=4, encrypted=False, n_ops=40)
        self.assertTrue(made >= 40)

    def test_every_cut_of_a_workload_recovers_encrypted_flash(self):
        made = sweep(12, blocks=5, encrypted=True, n_ops=40)
        self.assertTrue(made >= 40)

    def first_boot_cuts(self, enc, garbage):
        # One (mode, partition) case per call: its partitions are garbage
        # once it returns (a board's heap holds one case at a time).
        start = det_backing(21, 4) if garbage else None
        cut = 1
        while True:
            b = MemoryBacking(4 * BLOCK_SIZE) if start is None else start.copy()
            e = FlashEmu(b, encrypted=enc, cut_at=cut, seed=cut)
            try:
                Store(e, det_rng(cut))
            except PowerCut:
                pass
            else:
                break  # the mount finished before the cut point
            s = Store(FlashEmu(b), det_rng(1000 + cut))
            self.assertEqual(len(s.secrets()), 1)
            sec = s.secrets()[0]
            s.child_put(5, bytes(8), bytes(8), True, bytes(4))
            s = None
            s2 = Store(FlashEmu(b), det_rng(2000 + cut))
            self.assertEqual(s2.secrets(), [sec])
            self.assertEqual(s2.child_count(), 1)
            self.assertEqual(e.violations, 0)
            b = e = s2 = None
            cut += 1
        self.assertTrue(cut >= 4)

    def test_cuts_during_the_first_boot_of_a_blank_or_garbage_partition(self):
        # The first mount formats: erase, header, secret, boot record. A cut
        # anywhere in it must leave a partition that mounts with exactly one
        # secret, which then stays.
        for enc in (False, True):
            for garbage in (False, True):
                self.first_boot_cuts(enc, garbage)


if __name__ == "__main__":
    unittest.main()

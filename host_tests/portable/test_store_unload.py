# qcd.store with unload=True (the firmware app's store, issue 10 §3): its
# code (qcd.records, qcd.log) is out of sys.modules and the package between
# the mount and the writes, and what lands on flash is what a store that
# keeps its code writes, byte for byte. Runs on CPython and on MicroPython,
# whose import, sys.modules and module attributes are the ones that matter.
import sys
import unittest

import qcd
from qcdhost.emu.flash import BLOCK_SIZE, FlashEmu, MemoryBacking
from qcd.store import Store
from store_util import I1, I2, IP4, IP6, R1, R2, Rng, churn, same_map

CODE = ("records", "log")


def loaded():
    return [m for m in CODE if ("qcd." + m) in sys.modules or hasattr(qcd, m)]


def pair(blocks=4):
    out = []
    for unload in (False, True):
        e = FlashEmu(MemoryBacking(blocks * BLOCK_SIZE))
        out.append((e, Store(e, Rng(7), unload=unload)))
    return out


class TestUnload(unittest.TestCase):
    def test_the_code_is_not_loaded_between_the_mount_and_the_writes(self):
        e = FlashEmu(MemoryBacking(4 * BLOCK_SIZE))
        s = Store(e, Rng(1), unload=True)
        self.assertEqual(loaded(), [])
        s.child_put(7, I1, R1, True, IP4)
        self.assertEqual(loaded(), [])
        self.assertEqual(s.child_get(7), (I1, R1, True, IP4))
        s.child_drop(7)
        s.rollover()
        self.assertEqual(len(s.secrets()), 2)
        self.assertTrue(s.status()["writes"] > 0)
        self.assertEqual(loaded(), [])

    def test_an_unloading_store_writes_the_same_bytes_as_one_that_keeps_its_code(self):
        (e1, s1), (e2, s2) = pair()
        for s in (s1, s2):
            s.child_put(1, I1, R1, True, IP6)
            s.child_put(2, I2, R2, False, IP4)
            churn(s, 300, live=5)  # compactions included
            s.rollover()
            s.retire(s.status()["secrets"][1])
        self.assertTrue(s2.log.compactions >= 1)
        for off in range(0, 4 * BLOCK_SIZE, 256):  # in pieces: a board's heap
            self.assertEqual(e1.backing.read(off, 256), e2.backing.read(off, 256))
        same_map(self, s1, s2)
        self.assertEqual(s1.status(), s2.status())
        self.assertEqual(repr(s1), repr(s2))

    def test_after_a_reboot_the_unloading_store_reads_what_it_wrote(self):
        (e1, s1), (e2, s2) = pair()
        churn(s2, 120, live=6)
        e3 = e2.reboot()
        s3 = Store(e3, Rng(9), unload=True)
        same_map(self, s2, s3)
        self.assertEqual(s3.boot_count, 2)
        self.assertEqual(s3.secrets(), s2.secrets())


if __name__ == "__main__":
    unittest.main()

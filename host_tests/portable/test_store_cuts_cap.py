# qcd.store under power cuts while its Child SPI map is at its cap, on
# CPython and MicroPython (store_torture.py says what is checked; split from
# test_store_cuts.py: one module per board session).
import unittest

from store_torture import sweep


class TestPowerCutsAtTheCap(unittest.TestCase):
    def test_cuts_while_the_map_is_at_its_cap(self):
        # A put at the cap also evicts the oldest entry: wholly, with the put.
        made = sweep(14, blocks=4, encrypted=True, n_ops=40, cap=7, stride=2)
        self.assertTrue(made >= 20)

    def test_cuts_when_an_eviction_needs_a_new_block(self):
        # Puts at the cap that fill the head block exactly: the eviction's
        # DROP opens a block, compacting the one that holds the victim. The
        # victim must not be copied forward (a cut before the DROP would then
        # make the next mount evict another, acknowledged entry).
        stats = {}
        made = sweep(15, blocks=4, encrypted=False, n_ops=6, cap=6, cap_drop=4, stride=3, stats=stats)
        self.assertTrue(made >= 100)
        self.assertTrue(stats["cap_drop_compacting"] >= 1)


if __name__ == "__main__":
    unittest.main()

# qcd.store under power cuts on faulty flash, on CPython and MicroPython:
# next to a worn block, and where torn operations leave bits that read back
# unstable (store_torture.py says what is checked; split from
# test_store_cuts.py: one module per board session).
import unittest

from store_torture import sweep


class TestPowerCutsFaultyFlash(unittest.TestCase):
    def test_cuts_next_to_a_worn_block(self):
        made = sweep(13, blocks=5, encrypted=False, n_ops=40, worn=True, stride=2)
        self.assertTrue(made >= 20)

    def test_cuts_on_flash_whose_torn_bits_read_back_unstable(self):
        made = sweep(16, blocks=4, encrypted=True, n_ops=40, unstable=True, stride=2)
        self.assertTrue(made >= 20)


if __name__ == "__main__":
    unittest.main()

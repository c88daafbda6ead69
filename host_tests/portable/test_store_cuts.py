# qcd.store under power cuts, on CPython and MicroPython: a workload is run
# once per cut point (every program and erase operation), the power cut
# there, and after the reboot the store must hold exactly what it had
# acknowledged (store_torture.py says what is checked). The long runs are
# host_tests/test_store_torture.py and `make torture`.
import unittest

from store_torture import sweep


class TestPowerCuts(unittest.TestCase):
    def test_every_cut_of_a_workload_recovers_plain_flash(self):
        made = sweep(11, blocks=4, encrypted=False, n_ops=40)
        self.assertTrue(made >= 40)

    def test_every_cut_of_a_workload_recovers_encrypted_flash(self):
        made = sweep(12, blocks=5, encrypted=True, n_ops=40)
        self.assertTrue(made >= 40)

    def test_cuts_next_to_a_worn_block(self):
        made = sweep(13, blocks=5, encrypted=False, n_ops=40, worn=True, stride=2)
        self.assertTrue(made >= 20)


if __name__ == "__main__":
    unittest.main()

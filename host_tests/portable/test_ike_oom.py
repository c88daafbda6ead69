# ike.engine's out-of-memory rules (issue 10 §7) on CPython and on the
# WebAssembly MicroPython (run.py), where MemoryError is what a full heap
# raises: a MemoryError while a datagram is handled drops that datagram, one
# in tick() postpones the step by OOM_BACKOFF_MS (the first IKE_SA_INIT
# included, never lost); both are counted and neither is an internal error.
# The failure is injected at the allocation point, the D-H key pair.
import unittest

from ike_util import DetRng, Pair, dev_config, install_crypto
from ike import ike_sa_init
from ike.config import Config
from ike.engine import OOM_BACKOFF_MS, Engine

MISSING = install_crypto()


class FailingKeyPair:
    """Stands in for dh.KeyPair while `left` > 0: each call raises
    MemoryError, as the exponentiation's big integers would on a full heap."""

    def __init__(self, real, left):
        self.real = real
        self.left = left

    def __call__(self, *a):
        if self.left > 0:
            self.left -= 1
            raise MemoryError("memory allocation failed")
        return self.real(*a)


class TestOutOfMemory(unittest.TestCase):
    def setUp(self):
        if MISSING:
            self.skipTest("crypto backend missing: %s" % MISSING)
        self.real = ike_sa_init.dh.KeyPair

    def tearDown(self):
        ike_sa_init.dh.KeyPair = self.real

    def test_first_initiation_is_postponed_by_a_memory_error_not_lost(self):
        logs = []
        eng = Engine(Config(dev_config(start_delay_s=0)), None, DetRng(1), logs.append)
        eng.start(0)
        ike_sa_init.dh.KeyPair = FailingKeyPair(self.real, 2)
        eng.tick(0)
        self.assertEqual(eng.take_datagrams(), [])
        self.assertEqual(eng.next_due(), OOM_BACKOFF_MS)
        eng.tick(OOM_BACKOFF_MS)  # fails again: postponed again
        self.assertEqual(eng.take_datagrams(), [])
        eng.tick(2 * OOM_BACKOFF_MS)
        self.assertEqual(len(eng.take_datagrams()), 1)
        self.assertEqual(len(eng.sas), 1)
        self.assertEqual(eng.counters["out_of_memory"], 2)
        self.assertEqual(eng.counters["internal_errors"], 0)
        self.assertTrue([x for x in logs if "out of memory in initiate" in x])

    def test_a_memory_error_drops_one_datagram_and_the_next_is_answered(self):
        p = Pair()
        p.dev.initiate(0)
        req = p.dev.take_datagrams()[0][0]
        ike_sa_init.dh.KeyPair = FailingKeyPair(self.real, 1)
        p.gw.receive(req, ("192.0.2.2", 500), False, 0)
        self.assertEqual(p.gw.take_datagrams(), [])
        self.assertEqual(len(p.gw.sas), 0)
        p.gw.receive(req, ("192.0.2.2", 500), False, 0)
        self.assertEqual(len(p.gw.take_datagrams()), 1)
        self.assertEqual(p.gw.counters["out_of_memory"], 1)
        self.assertEqual(p.gw.counters["internal_errors"], 0)


if __name__ == "__main__":
    unittest.main()

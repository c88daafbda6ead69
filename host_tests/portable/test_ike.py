# lib/ike end to end, sans-I/O: two engines in memory, with lib/qcd as the
# notify hook. Runs on CPython (pytest) and on the WebAssembly MicroPython
# (host_tests/portable/run.py), where each MODP-2048 exponentiation is
# slower: one IKE SA carries the whole story (handshake, ESP, rekeys, a
# reboot) so the suite stays short there.
import unittest

from ike_util import Pair, dev_config, gw_config, install_crypto
from ike import state
from qcd import hook as qhook
from qcdhost.keys import MemoryKeys

MISSING = install_crypto()
SECRET = bytes(range(32))


class TestEngineStory(unittest.TestCase):
    def test_handshake_esp_rekeys_and_quick_crash_detection(self):
        if MISSING:
            self.skipTest("crypto backend missing: %s" % MISSING)
        keys = MemoryKeys([SECRET])
        dev_hook = qhook.QcdHook(qhook.MAKER, keys, rate=None)
        gw_hook = qhook.QcdHook(qhook.TAKER)
        p = Pair(dev_config(nat_t="force"), gw_config(), dev_hook, gw_hook, record=False)

        # IKE_SA_INIT + IKE_AUTH: both ends up with the same SPIs, mirrored
        # Child SA keys, the device's token stored by the gateway.
        d, g = p.up()
        self.assertTrue(d is not None and g is not None)
        self.assertEqual(d.spis(), g.spis())
        self.assertTrue(d.natt and g.natt)
        dc, gc = d.children[0], g.children[0]
        self.assertEqual((dc.spi_in, dc.spi_out), (gc.spi_out, gc.spi_in))
        self.assertEqual(dc.keys[0:2], gc.keys[2:4])
        self.assertEqual(dc.keys[2:4], gc.keys[0:2])
        self.assertEqual(gw_hook.taker.counters["stored"], 1)

        # ESP-in-UDP both ways with the Child SA keys.
        self.assertTrue(p.gw.send_esp(p.now) is not None)
        self.assertTrue(p.dev.send_esp(p.now) is not None)
        p.pump()
        self.assertEqual((dc.packets_in, gc.packets_in), (1, 1))

        # Child SA rekey from the gateway, IKE SA rekey from the device: the
        # token follows the new IKE SA (RFC 6290 §4.3).
        self.assertTrue(p.gw.rekey_child(p.now))
        p.pump()
        self.assertEqual(len(p.sa("dev").children), 1)
        self.assertTrue(p.sa("dev").children[0] is not dc)
        self.assertTrue(p.dev.rekey_ike(p.now))
        p.pump()
        d2, g2 = p.sa("dev"), p.sa("gw")
        self.assertEqual(d2.spis(), g2.spis())
        self.assertTrue(d2.spis() != d.spis())
        self.assertEqual(len(p.dev.sas), 1)
        self.assertEqual(len(p.gw.sas), 1)
        self.assertTrue(gw_hook.taker.has(d2.spi_i, d2.spi_r))
        self.assertFalse(gw_hook.taker.has(d.spi_i, d.spi_r))

        # The device reboots: a fresh engine and hook, same key source. The
        # gateway's liveness check is answered INVALID_IKE_SPI + QCD and the
        # gateway deletes the stale SA on that one answer.
        p.dev = type(p.dev)(p.dev.cfg, qhook.QcdHook(qhook.MAKER, keys, rate=None), p.dev.rng, p.dev._log)
        self.assertTrue(p.gw.liveness(p.now))
        p.pump()
        self.assertEqual(len(p.gw.sas), 0)
        self.assertEqual(gw_hook.taker.counters["verified"], 1)
        self.assertTrue("ike_down" in p.names("gw"))

        # And the device builds a new SA.
        d3, g3 = p.up()
        self.assertTrue(d3 is not None and g3 is not None and d3.state == state.ESTABLISHED)
        for e in (p.dev, p.gw):
            self.assertEqual(e.counters["internal_errors"], 0)
            self.assertEqual(e.counters["hook_errors"], 0)


if __name__ == "__main__":
    unittest.main()

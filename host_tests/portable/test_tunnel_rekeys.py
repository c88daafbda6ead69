# ike.tunnel through Child SA and IKE SA rekeys from either side, sans-I/O
# (ike_util.Pair; split from test_tunnel.py: one module per board session).
import unittest

from ike_util import Pair, dev_config, gw_config, install_crypto
from ike.tunnel import Tunnel

MISSING = install_crypto()
DEV_IP = "10.2.0.5"
GW_IP = "10.1.0.1"


class TestRekeys(unittest.TestCase):
    def setUp(self):
        if MISSING:
            self.skipTest("crypto backend missing: %s" % MISSING)

    def test_datagrams_follow_child_and_ike_sa_rekeys_from_either_side(self):
        p = Pair(dev_config(nat_t="force", tunnel={"inner_addr": DEV_IP}), gw_config(tunnel={"inner_addr": GW_IP}), record=False)
        dt, gt = Tunnel(p.dev), Tunnel(p.gw)
        p.up()
        echo = gt.socket(7)
        s = dt.socket(5000)
        spis = set()
        ike = set()
        for i, (eng, what) in enumerate(((p.dev, "rekey_child"), (p.gw, "rekey_child"), (p.dev, "rekey_ike"), (p.gw, "rekey_ike"))):
            self.assertTrue(getattr(eng, what)(p.now))
            p.pump()
            p.advance(1000)
            s.sendto(b"after %d" % i, (GW_IP, 7))
            p.pump()
            got = echo.recvfrom()
            self.assertEqual(got, (b"after %d" % i, (DEV_IP, 5000)))
            echo.sendto(b"back %d" % i, got[1])
            p.pump()
            self.assertEqual(s.recvfrom(), (b"back %d" % i, (GW_IP, 7)))
            sa = p.sa("dev")
            self.assertEqual([c.state for c in sa.children], ["INSTALLED"])  # the old one is gone
            spis.add(sa.children[0].spi_in)
            ike.add(sa.spis())
        # two Child SA rekeys: two new Child SAs; two IKE SA rekeys: two new
        # IKE SAs that took the Child SA over (RFC 7296 §2.8); traffic went on
        self.assertEqual((len(spis), len(ike)), (2, 3))
        self.assertEqual(p.dev.counters["internal_errors"] + p.gw.counters["internal_errors"], 0)

if __name__ == "__main__":
    unittest.main()

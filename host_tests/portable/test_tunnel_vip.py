# ike.tunnel with a virtual IP from the gateway's pool (IKEv2 configuration
# payload), sans-I/O (ike_util.Pair; split from test_tunnel.py: one module
# per board session).
import unittest

from ike_util import Pair, dev_config, gw_config, install_crypto
from ike import ts as tsmod
from ike.tunnel import Tunnel, TunnelError

MISSING = install_crypto()
GW_IP = "10.1.0.1"


class TestVirtualIp(unittest.TestCase):
    def setUp(self):
        if MISSING:
            self.skipTest("crypto backend missing: %s" % MISSING)

    def test_address_from_the_pool_is_the_source_and_comes_back_after_a_reboot(self):
        from ike import config_payload as cp
        from ike.const import PT_CP

        dev = dev_config(nat_t="force", ts_local=["0.0.0.0/0"], tunnel={"virtual_ip": True})
        gw = gw_config(ts_peer=["10.3.0.0/24"], tunnel={"inner_addr": GW_IP, "pool": "10.3.0.0/24", "dns_servers": ["10.1.0.53"]})
        p = Pair(dev, gw, record=False)
        dt, gt = Tunnel(p.dev), Tunnel(p.gw)
        self.assertEqual(dt.address(), None)
        d, g = p.up()
        self.assertEqual(tsmod.ipv4_text(p.dev.virtual_ip), "10.3.0.1")
        self.assertEqual(p.dev.virtual_dns, [tsmod.ipv4("10.1.0.53")])
        self.assertEqual(dt.address(), "10.3.0.1")
        self.assertTrue("virtual_ip" in p.names("dev"))
        # the gateway narrowed TSi to the assigned address
        self.assertEqual([tsmod.to_text(t) for t in d.children[0].ts_local], ["10.3.0.1/32"])
        echo = gt.socket(7)
        dt.sendto(b"r1", (GW_IP, 7))
        p.pump()
        self.assertEqual(echo.recvfrom(), (b"r1", ("10.3.0.1", dt._default.port)))
        gt.ping("10.3.0.1", 1)
        p.pump()
        self.assertEqual(gt.replies[-1][0], "10.3.0.1")
        # a power cut: a new device engine, same identity -> the same address
        from ike.engine import Engine
        from ike_util import DetRng

        p.dev = Engine(p.dev.cfg, None, DetRng(77), p._logger("dev2"))
        dt2 = Tunnel(p.dev)
        p.dev.initiate(p.now)
        p.pump()
        self.assertEqual(dt2.address(), "10.3.0.1")
        dt2.sendto(b"r2", (GW_IP, 7))
        p.pump()
        self.assertEqual(echo.recvfrom()[0], b"r2")
        # the codec: a request asks for the address and DNS with empty values
        self.assertEqual(cp.decode(cp.request()), (cp.CFG_REQUEST, [(1, b""), (3, b"")]))
        for bad in (b"", b"\x02\x00\x00", b"\x02\x00\x00\x00\x00\x01\x00\x05abcd", b"\x02\x00\x00\x00\x00"):
            self.assertEqual(cp.parse_reply(bad), None)
        self.assertEqual(cp.parse_reply(cp.reply(bytes(4))), (None, []))
        self.assertEqual(PT_CP, 47)

    def test_no_reply_means_no_address_and_a_clear_error(self):
        dev = dev_config(nat_t="force", tunnel={"virtual_ip": True})
        p = Pair(dev, gw_config(), record=False)  # a gateway without a pool ignores CFG_REQUEST
        dt = Tunnel(p.dev)
        p.up()
        self.assertEqual(dt.address(), None)
        try:
            dt.sendto(b"x", (GW_IP, 7))
            self.fail("sent without an address")
        except TunnelError as e:
            self.assertTrue("no inner address" in str(e))

if __name__ == "__main__":
    unittest.main()

# ike.tunnel's settings and its refusal to send without a Child SA: no
# handshake (split from test_tunnel.py: one module per board session).
import unittest

from ike_util import dev_config, install_crypto
from ike import ts as tsmod
from ike.tunnel import Tunnel, TunnelError

install_crypto()  # an Engine draws random bytes (the WebAssembly port: jsrandom)
GW_IP = "10.1.0.1"


class TestTunnelLimits(unittest.TestCase):
    def test_settings_are_checked(self):
        from ike.config import Config
        from ike.tunnel import settings

        for bad in ({"mtu": 100}, {"mtu": "1500"}, {"inner_addr": "10.2"}, {"queue": 0}, {"virtual_ip": 1}, {"colour": 1}, []):
            try:
                settings(Config(dev_config(tunnel=bad)))
                self.fail("accepted %r" % (bad,))
            except ValueError:
                pass
        self.assertEqual(settings(Config(dev_config())), (False, None, 1500, 8))
        self.assertEqual(settings(Config(dev_config(tunnel={"mtu": 576, "inner_addr": "10.2.0.9"})))[1:3], (tsmod.ipv4("10.2.0.9"), 576))

    def test_no_child_sa_is_a_clear_error(self):
        from ike.config import Config
        from ike.engine import Engine

        t = Tunnel(Engine(Config(dev_config())))
        self.assertEqual(t.address(), None)
        try:
            t.sendto(b"x", (GW_IP, 7))
            self.fail("sent without a Child SA")
        except TunnelError as e:
            self.assertTrue("no Child SA" in str(e))

if __name__ == "__main__":
    unittest.main()

# ike.tunnel, sans-I/O: UDP datagrams and ICMP echo through the Child SA
# between two engines in memory (ike_util.Pair), each with a Tunnel. Runs on
# CPython (pytest) and on MicroPython (run.py); one IKE SA per test class
# keeps the Diffie-Hellman work short there. Rekeys, the virtual IP and the
# settings are in test_tunnel_rekeys.py, test_tunnel_vip.py and
# test_tunnel_limits.py: a board runs one test module per soft reset, so
# each holds only its own engines.
import struct
import unittest

from ike_util import Pair, dev_config, gw_config, install_crypto
from ike import esp
from ike import ts as tsmod
from ike.keymat import BLOCK
from ike.tunnel import Tunnel, TunnelError, max_inner

MISSING = install_crypto()
DEV_IP = "10.2.0.5"
GW_IP = "10.1.0.1"


def rfc1071(data):
    """The Internet checksum the slow, obvious way, to check the fast one."""
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def inner_of(pkt, child_keys):
    """Open an ESP datagram with the receiver's inbound keys: the IPv4 packet."""
    r = esp.decapsulate(pkt, child_keys[0], child_keys[1])
    return r[2]


def udp_packet(src, dst, sport, dport, payload, ck=None, ttl=64, frag=0):
    ulen = 8 + len(payload)
    pseudo = tsmod.ipv4(src) + tsmod.ipv4(dst) + struct.pack(">BBH", 0, 17, ulen)
    udp = struct.pack(">HHHH", sport, dport, ulen, 0) + payload
    if ck is None:
        ck = rfc1071(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack(">H", ck) + udp[8:]
    ip = struct.pack(">BBHHHBBH", 0x45, 0, 20 + ulen, 1, frag, ttl, 17, 0) + tsmod.ipv4(src) + tsmod.ipv4(dst)
    ip = ip[:10] + struct.pack(">H", rfc1071(ip)) + ip[12:]
    return ip + udp


class TestTunnel(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if MISSING:
            return
        cls.p = p = Pair(dev_config(nat_t="force", tunnel={"inner_addr": DEV_IP}), gw_config(tunnel={"inner_addr": GW_IP}), record=False)
        cls.dt = Tunnel(p.dev)
        cls.gt = Tunnel(p.gw)
        cls.d, cls.g = p.up()

    def setUp(self):
        if MISSING:
            self.skipTest("crypto backend missing: %s" % MISSING)

    def test_datagram_round_trip_with_addresses_ports_and_checksums(self):
        p = self.p
        echo = self.gt.socket(7)
        s = self.dt.socket(5000)
        try:
            self.assertEqual(self.dt.address(), DEV_IP)
            self.assertEqual(s.sendto(b"21.5 C", (GW_IP, 7)), 6)
            out = [w for w in p.dev.take_datagrams()]
            self.assertEqual(len(out), 1)
            pkt, dst, natt = out[0]
            self.assertTrue(natt)
            ip = inner_of(pkt, self.g.children[0].keys)
            # the inner IPv4 header and the UDP checksum, recomputed the slow way
            self.assertEqual(ip[0], 0x45)
            self.assertEqual(rfc1071(ip[:20]), 0)
            self.assertEqual(ip[12:16], tsmod.ipv4(DEV_IP))
            self.assertEqual(ip[16:20], tsmod.ipv4(GW_IP))
            self.assertEqual(ip[9], 17)
            udp = ip[20:]
            self.assertEqual(struct.unpack(">HHH", udp[:6]), (5000, 7, 14))
            pseudo = ip[12:20] + struct.pack(">BBH", 0, 17, len(udp))
            self.assertEqual(rfc1071(pseudo + udp), 0)
            p.gw.receive(pkt, ("192.0.2.2", 4500), True, p.now)
            got = echo.recvfrom()
            self.assertEqual(got, (b"21.5 C", (DEV_IP, 5000)))
            self.assertEqual(echo.recvfrom(), None)
            echo.sendto(b"ack " + got[0], got[1])
            p.pump()
            self.assertEqual(s.recvfrom(), (b"ack 21.5 C", (GW_IP, 7)))
            self.assertEqual(p.dev.counters["internal_errors"] + p.gw.counters["internal_errors"], 0)
        finally:
            s.close()
            echo.close()

    def test_odd_lengths_and_a_checksum_that_sums_to_zero(self):
        # every payload length 0..40 (odd ones pad the checksum with a zero)
        echo = self.gt.socket(9)
        try:
            for n in range(41):
                data = bytes((i * 37 + n) & 0xFF for i in range(n))
                self.dt.sendto(data, (GW_IP, 9))
                self.p.pump()
                got = echo.recvfrom()
                self.assertEqual(got[0], data)
        finally:
            echo.close()

    def test_largest_payload_fits_the_mtu_and_one_more_is_refused(self):
        p = self.p
        mx = self.dt.max_payload
        self.assertEqual(mx, 1394)  # MTU 1500
        self.assertEqual(max_inner(1500), 1422)
        echo = self.gt.socket(11)
        try:
            self.dt.sendto(b"x" * mx, (GW_IP, 11))
            pkt = p.dev.take_datagrams()[0][0]
            # the outer IPv4 + UDP headers make it exactly the MTU at most
            self.assertTrue(20 + 8 + len(pkt) <= 1500)
            self.assertTrue(20 + 8 + len(pkt) + BLOCK > 1500)
            p.gw.receive(pkt, ("192.0.2.2", 4500), True, p.now)
            self.assertEqual(len(echo.recvfrom()[0]), mx)
            try:
                self.dt.sendto(b"x" * (mx + 1), (GW_IP, 11))
                self.fail("an oversized payload was accepted")
            except ValueError as e:
                self.assertTrue("at most 1394" in str(e))
            self.assertEqual(p.dev.take_datagrams(), [])
        finally:
            echo.close()

    def test_nothing_outside_the_traffic_selectors_is_sent(self):
        for dst in (("10.9.0.1", 7), ("192.0.2.1", 7)):
            try:
                self.dt.sendto(b"x", dst)
                self.fail("sent outside the selectors")
            except TunnelError as e:
                self.assertTrue("outside the traffic selectors" in str(e))
        try:
            self.gt.sendto(b"x", ("10.3.0.1", 7))  # not the device's selector
            self.fail("gateway sent outside the selectors")
        except TunnelError:
            pass
        for bad in (("10.1.0.1", 0), ("not-an-ip", 7), ("10.1.0.1",), None):
            try:
                self.dt.sendto(b"x", bad)
                self.fail("bad address accepted: %r" % (bad,))
            except ValueError:
                pass
        self.assertEqual(self.p.dev.take_datagrams(), [])

    def inject(self, ip_packet):
        """The gateway sends a hand-made IPv4 packet into the Child SA."""
        before = dict(self.dt.counters)
        self.assertTrue(self.p.gw.send_esp(self.p.now, payload=ip_packet) is not None)
        self.p.pump()
        return [k for k in self.dt.counters if self.dt.counters[k] != before[k]]

    def test_inbound_packets_are_checked_before_delivery(self):
        s = self.dt.socket(6000)
        try:
            good = udp_packet(GW_IP, DEV_IP, 53, 6000, b"ok")
            self.assertEqual(self.inject(good), ["received"])
            self.assertEqual(s.recvfrom(), (b"ok", (GW_IP, 53)))
            cases = [
                ("dropped_selector", udp_packet("10.9.0.1", DEV_IP, 53, 6000, b"outside")),  # source outside TSr
                ("dropped_selector", udp_packet(GW_IP, "10.2.0.6", 53, 6000, b"not ours")),  # another address
                ("dropped_checksum", udp_packet(GW_IP, DEV_IP, 53, 6000, b"bad", ck=0x1234)),
                ("dropped_fragment", udp_packet(GW_IP, DEV_IP, 53, 6000, b"frag", frag=0x2000)),
                ("dropped_no_socket", udp_packet(GW_IP, DEV_IP, 53, 6001, b"closed port")),
                ("dropped_malformed", good[:24]),
                ("dropped_malformed", b"\x60" + good[1:]),  # IPv6 version nibble
                ("dropped_checksum", good[:10] + b"\x00\x00" + good[12:]),  # IPv4 header checksum
            ]
            for want, pkt in cases:
                self.assertEqual(self.inject(pkt), [want])
            # checksum 0 means none (RFC 768): delivered
            self.assertEqual(self.inject(udp_packet(GW_IP, DEV_IP, 53, 6000, b"no sum", ck=0)), ["received"])
            # trailing octets after the IPv4 total length are ignored
            self.assertEqual(self.inject(good + b"\x00" * 5), ["received"])
            self.assertEqual(s.recvfrom(), (b"no sum", (GW_IP, 53)))
            self.assertEqual(s.recvfrom(), (b"ok", (GW_IP, 53)))
            # a full queue drops what comes next, never what it holds
            for i in range(self.dt.queue_len + 2):
                self.inject(udp_packet(GW_IP, DEV_IP, 53, 6000, b"%d" % i))
            self.assertEqual(self.dt.counters["dropped_queue_full"], 2)
            self.assertEqual(s.recvfrom()[0], b"0")
            self.assertEqual(self.p.dev.counters["internal_errors"], 0)
        finally:
            s.close()

    def test_ping_from_the_gateway_side_is_answered(self):
        self.gt.ping(DEV_IP, 7, b"hello")
        self.p.pump()
        self.assertEqual(self.gt.replies[-1], (DEV_IP, 0x5143, 7))
        self.assertTrue(self.dt.counters["echo_answered"] >= 1)
        # and the other way round
        self.dt.ping(GW_IP, 8)
        self.p.pump()
        self.assertEqual(self.dt.replies[-1], (GW_IP, 0x5143, 8))


if __name__ == "__main__":
    unittest.main()

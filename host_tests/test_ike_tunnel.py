# ike.tunnel against independent implementations, CPython only: scapy builds
# and checks the inner IPv4/UDP/ICMP packets (its own checksum code), and
# hypothesis throws arbitrary packets into the Child SA. The portable suite
# (portable/test_tunnel.py) covers the same module on MicroPython.
import hashlib
import hmac

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ike_util import Pair, dev_config, gw_config
from scapy.layers.inet import ICMP, IP, UDP

from ike import crypto, esp
from ike.tunnel import Tunnel

DEV_IP = "10.2.0.5"
GW_IP = "10.1.0.1"

_PAIR = []


def pair():
    if not _PAIR:
        p = Pair(dev_config(nat_t="force", tunnel={"inner_addr": DEV_IP}), gw_config(tunnel={"inner_addr": GW_IP}))
        dt, gt = Tunnel(p.dev), Tunnel(p.gw)
        d, g = p.up()
        _PAIR.append((p, dt, gt, d, g))
    return _PAIR[0]


def opened(pkt, child):
    return esp.decapsulate(pkt, child.keys[0], child.keys[1])


def test_sent_datagram_passes_scapys_checksum_checks():
    p, dt, gt, d, g = pair()
    for payload in (b"", b"a", b"21.5", bytes(range(256)) * 5):
        dt.socket(4000 + len(payload)).sendto(payload, (GW_IP, 7))
        pkt = p.dev.take_datagrams()[0][0]
        seq, nh, inner = opened(pkt, g.children[0])
        assert nh == 4
        ip = IP(inner)
        assert (ip.src, ip.dst, ip.proto, ip[UDP].sport, ip[UDP].dport) == (DEV_IP, GW_IP, 17, 4000 + len(payload), 7)
        assert bytes(ip[UDP].payload) == payload
        # scapy recomputes both checksums when they are deleted
        again = ip.copy()
        del again.chksum
        del again[UDP].chksum
        again = IP(bytes(again))
        assert (again.chksum, again[UDP].chksum) == (ip.chksum, ip[UDP].chksum)


def test_scapy_built_datagram_and_ping_are_accepted():
    p, dt, gt, d, g = pair()
    s = dt.socket(6100)
    pkt = bytes(IP(src=GW_IP, dst=DEV_IP, id=9) / UDP(sport=123, dport=6100) / b"from scapy")
    p.gw.send_esp(p.now, payload=pkt)
    p.pump()
    assert s.recvfrom() == (b"from scapy", (GW_IP, 123))
    ping = bytes(IP(src=GW_IP, dst=DEV_IP) / ICMP(type=8, id=77, seq=3) / b"payload!")
    p.gw.send_esp(p.now, payload=ping)
    out = p.dev.take_datagrams()
    assert out == []  # nothing yet: the gateway's packet is still on its side
    for data, dst, natt in p.gw.take_datagrams():
        p.dev.receive(data, ("192.0.2.1", 4500), True, p.now)
    (reply,) = p.dev.take_datagrams()
    seq, nh, inner = opened(reply[0], g.children[0])
    r = IP(inner)
    assert (r.src, r.dst, r[ICMP].type, r[ICMP].id, r[ICMP].seq, bytes(r[ICMP].payload)) == (DEV_IP, GW_IP, 0, 77, 3, b"payload!")
    chk = r.copy()
    del chk[ICMP].chksum
    assert IP(bytes(chk))[ICMP].chksum == r[ICMP].chksum
    s.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=120), st.integers(0, 40))
def test_arbitrary_inner_packets_never_raise_and_change_nothing_else(data, cut):
    p, dt, gt, d, g = pair()
    s = dt.socket(0)
    # a valid UDP header to our socket, then arbitrary bytes, cut anywhere
    base = bytes(IP(src=GW_IP, dst=DEV_IP) / UDP(sport=1, dport=s.port) / data)
    for pkt in (data, base[:cut] + data, base):
        p.gw.send_esp(p.now, payload=pkt)
        p.pump()
    got = s.recvfrom()
    assert got == (data, (GW_IP, 1))
    assert p.dev.counters["internal_errors"] == 0
    s.close()


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_configuration_payload_decoders_never_raise(body):
    from ike import config_payload as cp

    d = cp.decode(body)
    assert d is None or (d[0] == body[0] and len(d[1]) <= cp.MAX_ATTRS)
    r = cp.parse_reply(body)
    assert r is None or (r[0] is None or len(r[0]) == 4) and all(len(x) == 4 for x in r[1])
    assert cp.wants_address(body) in ((False, False), (True, False), (True, True), (False, True))


def test_pool_hands_out_each_address_once_and_keeps_it_per_identity():
    from ike import config_payload as cp

    pool = cp.Pool("10.3.0.0/29")  # .1 .. .6 usable
    got = [pool.assign(("fqdn", b"dev%d" % i)) for i in range(6)]
    assert [g[3] for g in got] == [1, 2, 3, 4, 5, 6]
    assert pool.assign(("fqdn", b"dev6")) is None  # exhausted
    assert pool.assign(("fqdn", b"dev2")) == got[2]  # the same identity again
    assert cp.Pool("10.3.0.7/32").assign(("fqdn", b"x")) == bytes((10, 3, 0, 7))


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 1394), st.integers(1, 65535), st.integers(1, 65535), st.integers(0, 255))
def test_any_payload_size_and_ports_arrive_intact_with_checksums_scapy_accepts(n, sport, dport, fill):
    p, dt, gt, d, g = pair()
    if sport in dt._sockets or dport in gt._sockets:
        return
    s, r = dt.socket(sport), gt.socket(dport)
    try:
        payload = bytes((fill + i) & 0xFF for i in range(n))
        s.sendto(payload, (GW_IP, dport))
        (pkt, dst, natt), = p.dev.take_datagrams()
        inner = opened(pkt, g.children[0])[2]
        ip = IP(inner)
        again = ip.copy()
        del again.chksum
        del again[UDP].chksum
        again = IP(bytes(again))
        assert (again.chksum, again[UDP].chksum) == (ip.chksum, ip[UDP].chksum)
        assert 28 + len(pkt) <= 1500
        p.gw.receive(pkt, ("192.0.2.2", 4500), True, p.now)
        assert r.recvfrom() == (payload, (DEV_IP, sport))
    finally:
        s.close()
        r.close()


def test_esp_with_the_sas_hmac_key_is_the_same_packet_as_with_the_key_bytes():
    # ike.esp takes the Child SA's crypto.hmac_key (made once per SA) or key
    # bytes; the ICV checked against an independent HMAC (the standard library).
    ek, ik, iv = bytes(range(32)), bytes(range(32, 64)), bytes(16)
    mac = crypto.hmac_key(ik)
    inner = b"E" * 45
    pkt = esp.encapsulate(0x1234, 7, ek, mac, inner, esp.NEXT_IPV4, iv)
    assert pkt == esp.encapsulate(0x1234, 7, ek, ik, inner, esp.NEXT_IPV4, iv)
    assert pkt[-16:] == hmac.new(ik, pkt[:-16], hashlib.sha256).digest()[:16]
    n = len(inner)
    buf = bytearray(esp.ESP_HDR + 16 + n + 16 + 2 + 16)
    buf[esp.ESP_HDR + 16 : esp.ESP_HDR + 16 + n] = inner
    assert esp.seal_into(buf, n, 0x1234, 7, ek, mac, esp.NEXT_IPV4, iv) == pkt
    for key in (mac, ik, mac):
        assert esp.decapsulate(pkt, ek, key) == (7, esp.NEXT_IPV4, inner)
    assert esp.decapsulate(pkt, ek, crypto.hmac_key(bytes(32))) is None


def test_datagrams_go_out_on_the_old_child_sa_while_its_rekey_is_outstanding():
    # RFC 7296 §2.8: no gap in the traffic while a CREATE_CHILD_SA waits.
    p = Pair(dev_config(nat_t="force", tunnel={"inner_addr": DEV_IP}), gw_config(tunnel={"inner_addr": GW_IP}))
    dt = Tunnel(p.dev)
    d, g = p.up()
    old = g.children[0]
    assert p.dev.rekey_child(p.now)
    p.dev.take_datagrams()  # the CREATE_CHILD_SA request, not delivered
    dt.socket(4100).sendto(b"during the rekey", (GW_IP, 7))
    pkt = p.dev.take_datagrams()[0][0]
    seq, nh, inner = opened(pkt, old)
    assert bytes(IP(inner)[UDP].payload) == b"during the rekey"

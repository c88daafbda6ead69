# The data plane against strongSwan 5.9.8 (charon + kernel-libipsec, in the
# namespaces of qcdhost.strongswan): our device (qcd-peer with a
# "tunnel" section, the same ike.tunnel a board runs) sends UDP datagrams
# to an echo service on the gateway's protected side (10.1.0.1, in charon's
# network namespace) and gets them back; the gateway side pings the device's
# inner address; traffic outside the selectors is refused on both sides;
# after a power cut of the device and its return, traffic flows again. Two
# gateway configurations: fixed subnets, and a roadwarrior pool (virtual IP
# by CFG_REPLY). And the firmware example app itself (firmware/readings.py:
# ike.aio's asyncio loop) as the device against charon.
import json
import os
import sys
import time

from qcdhost import strongswan
from peers import Peer
from test_ike_strongswan import CONN, PSK, Setup, charon_ok, our_cfg, wait_match  # noqa: F401 (fixture)

HERE = os.path.dirname(os.path.abspath(__file__))
SIDE = [sys.executable, os.path.join(HERE, "gateway_side.py")]
GW_IP = strongswan.GW_ADDR


def start(tmp, pool=False, **ours):
    c = strongswan.Charon(str(tmp)).start()
    if pool:
        c.load_pool("p", "10.3.0.0/24")
        c.load(CONN, "gw.example", "dev.example", PSK, "10.1.0.0/16", "dynamic", extra={"pools": ["p"]})
    else:
        c.load(CONN, "gw.example", "dev.example", PSK, "10.1.0.0/16", "10.2.0.0/24")
    echo_log = os.path.join(str(tmp), "echo.log")
    c.gateway_side(SIDE + ["echo", GW_IP, "7"], log_path=echo_log, wait=False)
    peer = Peer(str(tmp), "dev", our_cfg("initiator", tmp, **ours), prefix=c.netns())
    peer.start()
    s = Setup(c, peer, "initiator")
    s.echo_log = echo_log
    wait_match(s, "up")
    return s


def echoed(s, text, timeout=30.0):
    """Send `text` to the echo service through the tunnel; the datagrams
    that came back to our socket until it is there."""
    r = s.peer.ctl("send %s:7 %s" % (GW_IP, text))
    assert r["ok"], r
    end = time.monotonic() + timeout
    seen = []
    while time.monotonic() < end:
        seen += s.peer.ctl("recv")["datagrams"]
        if [d for d in seen if d["payload"] == text]:
            return seen
        time.sleep(0.05)
    raise AssertionError("no echo of %r: %s\n%s\n%s" % (text, seen, s.peer.log()[-2000:], s.charon.log()[-3000:]))


def ping_from_gateway(s, dst, seq):
    r = s.charon.gateway_side(SIDE + ["ping", GW_IP, dst, str(seq)])
    assert r.returncode == 0, (r.stdout, r.stderr, s.peer.ctl("tunnel"))
    return json.loads(r.stdout)


def tunnel(s):
    return s.peer.ctl("tunnel")


def test_fixed_subnets_echo_ping_selectors_and_a_power_cut(tmp_path, charon_ok):
    s = start(tmp_path, tunnel={"inner_addr": "10.2.0.5"})
    try:
        assert tunnel(s)["address"] == "10.2.0.5"
        got = echoed(s, "reading-1")
        assert got[-1]["from"] == "%s:7" % GW_IP
        with open(s.echo_log) as f:
            assert "from 10.2.0.5:" in f.read()  # the echo service saw our inner address
        p = ping_from_gateway(s, "10.2.0.5", 5)
        assert p == {"from": "10.2.0.5", "seq": 5, "data": "gateway-side ping", "checksum_ok": True}
        assert tunnel(s)["counters"]["echo_answered"] == 1
        # outside the selectors: we refuse to send ...
        r = s.peer.ctl("send 10.9.0.1:7 outside")
        assert not r["ok"] and "outside the traffic selectors" in r["error"]
        # ... and the gateway side's datagram to another address of our
        # subnet (inside charon's selectors, so it comes through the SA) is
        # refused by us; one from outside charon's selectors never enters it
        before = tunnel(s)["counters"]
        assert s.charon.gateway_side(SIDE + ["send", GW_IP, "5353", "10.2.0.99", "5000", "not-ours"]).returncode == 0
        assert s.charon.gateway_side(SIDE + ["send", strongswan.CHARON_ADDR, "5353", "10.2.0.5", str(tunnel(s)["sockets"][0]), "no-policy"]).returncode == 0
        end = time.monotonic() + 20
        while tunnel(s)["counters"]["dropped_selector"] == before["dropped_selector"] and time.monotonic() < end:
            time.sleep(0.05)
        after = tunnel(s)["counters"]
        assert after["dropped_selector"] == before["dropped_selector"] + 1
        assert after["received"] == before["received"]
        assert s.peer.ctl("recv")["datagrams"] == []
        # a power cut of the device and its return: a new IKE SA
        # (INITIAL_CONTACT replaces the stale one at charon) and traffic again
        stale = s.spis()
        s.peer.kill()
        s.peer.start()
        wait_match(s, "after the power cut")
        assert s.spis() != stale
        echoed(s, "reading-2")
        assert ping_from_gateway(s, "10.2.0.5", 6)["seq"] == 6
    finally:
        s.peer.kill()
        s.charon.stop()


def test_roadwarrior_pool_assigns_the_virtual_ip_the_device_sends_from(tmp_path, charon_ok):
    s = start(tmp_path, pool=True, ts_local=["0.0.0.0/0"], tunnel={"virtual_ip": True})
    try:
        t = tunnel(s)
        assert t["address"] == "10.3.0.1", (t, s.peer.log()[-2000:])
        assert "virtual IP 10.3.0.1 assigned" in s.peer.log()
        sa = s.sa()
        assert [v.decode() for v in sa["remote-vips"]] == ["10.3.0.1"]
        assert [v.decode() for v in list(sa["child-sas"].values())[0]["remote-ts"]] == ["10.3.0.1/32"]
        echoed(s, "reading-vip")
        with open(s.echo_log) as f:
            assert "from 10.3.0.1:" in f.read()
        assert ping_from_gateway(s, "10.3.0.1", 9)["from"] == "10.3.0.1"
        r = s.peer.ctl("send 10.9.0.1:7 outside")
        assert not r["ok"] and "outside the traffic selectors" in r["error"]
        s.peer.kill()
        s.peer.start()
        wait_match(s, "after the power cut")
        addr = tunnel(s)["address"]
        assert addr is not None and addr.startswith("10.3.0.")
        echoed(s, "reading-vip-2")
        assert ping_from_gateway(s, addr, 10)["from"] == addr
    finally:
        s.peer.kill()
        s.charon.stop()


def test_the_readings_app_runs_its_asyncio_loop_against_strongswan(tmp_path, charon_ok):
    # The device is the firmware example app itself (firmware/readings.py on
    # CPython through qcdhost.emu.hostapp: ike.aio, ike.tunnel), in the peer
    # namespace; charon with fixed subnets; the echo service answers.
    from peers import app_config

    c = strongswan.Charon(str(tmp_path)).start()
    try:
        c.load(CONN, "gw.example", "dev.example", PSK, "10.1.0.0/16", "10.2.0.0/24")
        echo_log = os.path.join(str(tmp_path), "echo.log")
        c.gateway_side(SIDE + ["echo", GW_IP, "7"], log_path=echo_log, wait=False)
        cfg = app_config((500, 4500), (500, 4500), psk=PSK, tunnel={"inner_addr": "10.2.0.7"}, app={"to": "%s:7" % GW_IP, "every_s": 0.3, "count": 8},
                         qcd={"role": "maker", "rate": 100, "burst": 100})
        cfg["local"]["addr"] = strongswan.PEER_ADDR
        cfg["peer"] = {"addr": strongswan.CHARON_ADDR, "port": 500, "natt_port": 4500}
        path = tmp_path / "qcd.json"
        path.write_text(json.dumps(cfg))
        out = tmp_path / "app.log"
        p = c.run_peer([sys.executable, "-m", "qcdhost.emu.hostapp", "--image", str(tmp_path / "qcd.img"), "--config", str(path), "--run", "readings"], str(out))
        p.wait(timeout=120)
        log = out.read_text()
        answers = log.count("app: answer from %s:7: b'reading " % GW_IP)
        assert answers >= 3, log[-3000:] + c.log()[-3000:]
        assert "ike: asyncio loop on" in log and "from 10.2.0.7" in log
        with open(echo_log) as f:
            assert "from 10.2.0.7:5000" in f.read()
    finally:
        c.stop()

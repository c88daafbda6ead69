# The data plane with our own gateway (qcd-peer, QCD taker, UDP echo
# service on its tunnel port 7): the device (qcd-peer, QCD maker on the
# flash emulator, the "tunnel" section a board's config has) sends readings
# that come back; after a power cut the gateway's next datagram to the
# device is the first ESP packet the rebooted device sees, answered with
# INVALID_SPI + QCD (RFC 6290 §8.2), and the stale SA is gone at once; the
# device's new SA carries traffic again. Once with fixed inner addresses,
# once with an address pool on the gateway (virtual IP by CFG_REPLY).
import time

from peers import GW_INNER, QUICK_RETRANSMIT, Peer, device_config, echo_gateway, one_up

GW_IP = GW_INNER


def dev_cfg(gw_ports, image, **kw):
    return device_config(gw_ports, qcd={"role": "maker", "image": image, "rate": 100, "burst": 100}, **kw)


def pair(tmp_path, gw_tunnel, dev_tunnel, **dev_kw):
    gw = echo_gateway(str(tmp_path), retransmit=QUICK_RETRANSMIT, tunnel=gw_tunnel, **({"ts_peer": ["10.3.0.0/24"]} if "pool" in gw_tunnel else {}))
    dev = Peer(str(tmp_path), "dev", dev_cfg(gw.ports(), str(tmp_path / "qcd.img"), tunnel=dev_tunnel, **dev_kw)).start()
    gw.wait(one_up, what="up")
    dev.wait(one_up, what="up")
    p = dev.ports()
    dev.config["local"] = {"addr": "127.0.0.1", "port": p[0], "natt_port": p[1]}
    return gw, dev


def echoed(dev, text, timeout=30.0):
    r = dev.ctl("send %s:7 %s" % (GW_IP, text))
    assert r["ok"], r
    end = time.monotonic() + timeout
    seen = []
    while time.monotonic() < end:
        seen += dev.ctl("recv")["datagrams"]
        if [d for d in seen if d["payload"] == text]:
            return r["from"]
        time.sleep(0.05)
    raise AssertionError("no echo of %r: %s\n%s" % (text, seen, dev.log()[-2000:]))


def story(gw, dev, want_addr):
    src = echoed(dev, "reading-1")
    assert src[0] == want_addr
    assert gw.ctl("ping %s 3" % want_addr)["ok"]
    end = time.monotonic() + 20
    while not gw.ctl("tunnel")["replies"] and time.monotonic() < end:
        time.sleep(0.05)
    assert gw.ctl("tunnel")["replies"] == [[want_addr, 0x5143, 3]]
    # outside the selectors: refused by each side before anything is sent
    assert "outside the traffic selectors" in dev.ctl("send 10.9.0.1:7 x")["error"]
    assert "outside the traffic selectors" in gw.ctl("send 10.9.0.1:7 x")["error"]
    # power cut; the device comes back without an SA; the gateway's next
    # datagram to it (its stale Child SA's ESP) gets INVALID_SPI + QCD
    dev.kill()
    dev.start(start_delay_s=None)
    mark = len(gw.log())
    r = gw.ctl("send %s:%d after-the-cut" % (want_addr, src[1]))
    assert r["ok"], r
    gw.wait(lambda s: not s["ike_sas"], what="stale SA deleted on the first ESP packet")
    log = gw.log()[mark:]
    assert "verified token" in log and "out INFORMATIONAL" not in log
    assert "answered INVALID_SPI + QCD" in dev.log()
    # the device's new SA carries traffic again
    assert dev.ctl("initiate")["ok"]
    gw.wait(one_up, what="new SA")
    dev.wait(one_up, what="new SA")
    assert echoed(dev, "reading-2")[0] == want_addr


def test_fixed_addresses_readings_ping_and_the_first_esp_packet_after_a_power_cut(tmp_path):
    gw, dev = pair(tmp_path, {"inner_addr": GW_IP}, {"inner_addr": "10.2.0.5"})
    try:
        story(gw, dev, "10.2.0.5")
    finally:
        dev.kill()
        gw.kill()


def test_pool_on_our_gateway_gives_the_device_its_address_again_after_a_power_cut(tmp_path):
    gw, dev = pair(tmp_path, {"inner_addr": GW_IP, "pool": "10.3.0.0/24", "dns_servers": ["10.1.0.53"]}, {"virtual_ip": True}, ts_local=["0.0.0.0/0"])
    try:
        assert "virtual IP 10.3.0.1 assigned" in dev.log() and "(DNS 10.1.0.53)" in dev.log()
        story(gw, dev, "10.3.0.1")
    finally:
        dev.kill()
        gw.kill()

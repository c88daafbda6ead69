# QCD end to end: two qcd-peer processes over real UDP sockets on
# loopback. The device is the token maker (IKE initiator, behind a forced
# NAT so IKE and ESP run on the NAT-T port) with its secret in qcd.store on
# an emulated flash image; the gateway is the token taker (responder). The
# device is killed with SIGKILL (a power cut) and started again on the same
# ports and image. test_qcd_reboot.py has the flash-specific cases (RFC 6290
# §8.2 ESP, writes torn by a power cut).
import os
import socket
import struct
import subprocess

import pytest
from peers import Peer, device_config, gateway_config, one_up
from support import need_tool

from qcd import wire
from qcd.tokens import make_token


def gw_cfg():
    return gateway_config()


def dev_cfg(gw_ports, image):
    return device_config(gw_ports, qcd={"role": "maker", "image": image, "rate": 100, "burst": 100})


@pytest.fixture
def pair(tmp_path):
    gw = Peer(str(tmp_path), "gw", gw_cfg()).start()
    secret = str(tmp_path / "qcd.img")
    dev = Peer(str(tmp_path), "dev", dev_cfg(gw.ports(), secret)).start()
    gw.wait(one_up, what="IKE SA and Child SA up")
    dev.wait(one_up, what="IKE SA and Child SA up")
    # later runs of the device keep its ports (a device's are fixed)
    p = dev.ports()
    dev.config["local"] = {"addr": "127.0.0.1", "port": p[0], "natt_port": p[1]}
    yield gw, dev, secret
    for peer in (dev, gw):
        peer.kill()


def the_sa(peer):
    sas = peer.up_sas()
    assert len(sas) == 1, sas
    return bytes.fromhex(sas[0]["spi_i"]), bytes.fromhex(sas[0]["spi_r"])


def read_secret(image):
    """The device's current secret, read from its flash image without
    writing to it (what `qcdtool token --image` does)."""
    from qcdhost.emu.flash import FileBacking, FlashEmu

    from qcd import store

    emu = FlashEmu(FileBacking(image, readonly=True), readonly=True)
    try:
        return store.mount(emu, readonly=True, count_boot=False).secrets()[0]
    finally:
        emu.backing.close()


def third_party(addr="127.0.0.3"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 0))
    return s


def qcd_answer(spi_i, spi_r, tokens, msg_id=0):
    """What a maker sends after a reboot (RFC 6290 §4.5), for a liveness
    check the gateway (responder, I flag clear) sent with `msg_id`."""
    req = wire.parse(wire.build(spi_i, spi_r, wire.INFORMATIONAL, 0, msg_id, [(wire.PT_SK, bytes(48))]))
    return wire.answer_invalid_ike_spi(req, tokens)


def send_to_gw(gw, data, src="127.0.0.3"):
    s = third_party(src)
    try:
        s.sendto(b"\x00\x00\x00\x00" + data, ("127.0.0.1", gw.ports()[1]))
    finally:
        s.close()


def pcap_datagrams(path):
    """(src port, dst port, payload) of every record in our pcap files."""
    out = []
    with open(path, "rb") as f:
        data = f.read()
    pos = 24
    while pos + 16 <= len(data):
        _s, _us, incl, _orig = struct.unpack("<IIII", data[pos : pos + 16])
        pkt = data[pos + 16 : pos + 16 + incl]
        sport, dport = struct.unpack(">HH", pkt[20:24])
        out.append((sport, dport, pkt[28:]))
        pos += 16 + incl
    return out


# -- the token's travels -----------------------------------------------------------


def test_token_travels_in_ike_auth_and_after_each_ike_sa_rekey(pair):
    gw, dev, _secret = pair
    assert "out IKE_AUTH request #1" in dev.log() and "N(QUICK_CRASH_DETECTION)]" in dev.log()
    st = gw.status()["hook"]
    assert st["tokens_held"] == 1 and st["taker"]["stored"] == 1
    # the device rekeys: RFC 6290 §4.3, its token follows in an INFORMATIONAL
    assert dev.ctl("rekey-ike")["ok"]
    gw.wait(lambda s: s["hook"]["taker"]["stored"] == 2 and s["hook"]["taker"]["forgotten"] == 1, what="token for the rekeyed SA")
    assert "out INFORMATIONAL request #0" in dev.log()
    # the gateway rekeys: the device's CREATE_CHILD_SA response carries it
    assert gw.ctl("rekey-ike")["ok"]
    st = gw.wait(lambda s: s["hook"]["taker"]["stored"] == 3 and s["hook"]["taker"]["forgotten"] == 2, what="token in the rekey response")
    assert st["hook"]["tokens_held"] == 1
    assert "out CREATE_CHILD_SA response #0" in dev.log() and "[SA No KE N(QUICK_CRASH_DETECTION)]" in dev.log()
    spi = the_sa(gw)
    assert the_sa(dev) == spi


# -- a reboot ---------------------------------------------------------------------


def reboot(dev):
    """Power cut, then the same device comes back, waiting to initiate."""
    dev.kill()
    dev.start(start_delay_s=None)


def test_after_a_reboot_the_liveness_check_gets_qcd_and_the_sa_goes_in_one_round_trip(pair):
    gw, dev, _secret = pair
    stale = the_sa(gw)
    reboot(dev)
    mark = len(gw.log())
    assert gw.ctl("liveness")["ok"]
    gw.wait(lambda s: not s["ike_sas"], what="stale SA deleted")
    log = gw.log()[mark:]
    assert "verified token" in log and "peer rebooted" in log
    assert "retransmit" not in log  # one request, one answer
    assert gw.status()["hook"]["taker"]["verified"] == 1
    dlog = dev.log()
    assert "answered INVALID_IKE_SPI + QCD" in dlog and stale[0].hex() in dlog
    # the device builds a new SA
    assert dev.ctl("initiate")["ok"]
    gw.wait(one_up, what="new SA")
    assert the_sa(gw) != stale
    # the unprotected answer on the wire, decoded by tshark
    tshark = need_tool("tshark")
    pcap = "%s.%d" % (gw.pcap_path, gw.runs)
    p = subprocess.run(
        # non-standard ports: IKE port as isakmp, NAT-T port as udpencap
        # (which strips the non-ESP marker, RFC 3948)
        [tshark, "-r", pcap, "-d", "udp.port==%d,isakmp" % gw.ports()[0], "-d", "udp.port==%d,udpencap" % gw.ports()[1], "-T", "fields", "-e", "isakmp.notify.msgtype"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    # INVALID_IKE_SPI (4) and QUICK_CRASH_DETECTION (16419) in one datagram
    assert [line for line in p.stdout.splitlines() if line.strip().split(",") == ["4", "16419"]], p.stdout


# -- what the taker refuses, and what it accepts -------------------------------------


def test_a_forged_token_changes_nothing(pair):
    gw, _dev, _secret = pair
    spi = the_sa(gw)
    send_to_gw(gw, qcd_answer(spi[0], spi[1], [os.urandom(32)]))
    gw.wait(lambda s: s["hook"]["taker"]["mismatch"] == 1, what="mismatch counted")
    assert the_sa(gw) == spi
    assert gw.ctl("liveness")["ok"]
    gw.wait_log("liveness check")  # the SA still answers


def test_a_token_for_another_sa_changes_nothing(pair):
    gw, dev, secret = pair
    old = the_sa(gw)
    assert dev.ctl("rekey-ike")["ok"]
    gw.wait(lambda s: s["hook"]["taker"]["stored"] == 2 and len(s["ike_sas"]) == 1, what="rekeyed")
    spi = the_sa(gw)
    assert spi != old
    # genuine token of the old SA (right secret), sent for the current SA
    tok = make_token(read_secret(secret), old[0], old[1])
    send_to_gw(gw, qcd_answer(spi[0], spi[1], [tok]))
    gw.wait(lambda s: s["hook"]["taker"]["mismatch"] == 1, what="mismatch counted")
    assert the_sa(gw) == spi


def test_a_replayed_answer_after_re_establishment_changes_nothing(pair):
    gw, dev, _secret = pair
    reboot(dev)
    assert gw.ctl("liveness")["ok"]
    gw.wait(lambda s: not s["ike_sas"], what="stale SA deleted")
    assert dev.ctl("initiate")["ok"]
    gw.wait(one_up, what="new SA")
    new = the_sa(gw)
    # the real answer the device sent, as the gateway captured it
    answers = []
    for sport, dport, payload in pcap_datagrams("%s.%d" % (gw.pcap_path, gw.runs)):
        m = wire.parse(payload[4:]) if payload[:4] == bytes(4) else None
        if m is not None and not m.is_protected() and [n for n in m.notifies() if n[0] == wire.INVALID_IKE_SPI]:
            answers.append(payload[4:])
    assert len(answers) == 1
    send_to_gw(gw, answers[0])  # verbatim: its SA is gone
    gw.wait(lambda s: s["hook"]["taker"]["unknown_sa"] + s["hook"]["taker"]["no_token"] >= 1 or s["counters"]["dropped_unknown_spi"] >= 1, what="replay ignored")
    moved = new[0] + new[1] + answers[0][16:]  # retargeted at the new SA
    send_to_gw(gw, moved)
    gw.wait(lambda s: s["hook"]["taker"]["mismatch"] == 1, what="mismatch counted")
    assert the_sa(gw) == new


def test_a_valid_token_from_a_third_address_is_accepted(pair):
    # RFC 6290 §3: the taker "MUST accept such tokens from any IP address
    # and port" (a cluster member or backup gateway may answer).
    gw, _dev, secret = pair
    spi = the_sa(gw)
    tok = make_token(read_secret(secret), spi[0], spi[1])
    send_to_gw(gw, qcd_answer(spi[0], spi[1], [tok]), src="127.0.0.9")
    gw.wait(lambda s: not s["ike_sas"], what="SA deleted")
    assert gw.status()["hook"]["taker"]["verified"] == 1
    assert "verified token from 127.0.0.9" in gw.log()


def test_sigterm_deletes_the_sas_and_stops(pair):
    gw, dev, _secret = pair
    assert dev.stop() == 0
    assert "stopped" in dev.log()
    gw.wait(lambda s: not s["ike_sas"], what="Delete from the stopping device")
    assert "deleted by peer" in gw.log()

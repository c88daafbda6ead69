# Wire checks against decoders nobody here wrote: Wireshark's tshark and
# scapy's IKEv2 layer decode the answers qcdtool emits, field by field.
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from support import QCDTOOL, need_tool
from qcd import wire
from qcd.tokens import make_token

SECRET = bytes(range(100, 132))
SPI_I = bytes.fromhex("0102030405060708")
SPI_R = bytes.fromhex("a1a2a3a4a5a6a7a8")
TOKEN = make_token(SECRET, SPI_I, SPI_R)


@pytest.fixture
def secret_file(tmp_path):
    p = tmp_path / "secret.bin"
    p.write_bytes(SECRET)
    return str(p)


def qcdtool_answer(secret_file, request, src="192.0.2.1:500", *extra):
    p = subprocess.run(
        [sys.executable, QCDTOOL, "respond", "--secret-file", secret_file, "--from", src, *extra, request.hex()],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    return bytes.fromhex(p.stdout.strip())


def request(exchange=wire.INFORMATIONAL, flags=wire.FLAG_I, msg_id=0x11223344):
    return wire.build(SPI_I, SPI_R, exchange, flags, msg_id, [(wire.PT_SK, bytes(range(48)))])


CASES = [  # (request, expected exchange, expected answer flags)
    (request(wire.INFORMATIONAL, wire.FLAG_I), 37, 0x20),
    (request(wire.CREATE_CHILD_SA, 0), 36, 0x28),
    (request(wire.IKE_AUTH, wire.FLAG_I, 1), 35, 0x20),
]


def write_pcap(path, datagrams):
    from scapy.all import IP, UDP, Raw, wrpcap

    pkts = []
    for d, port in datagrams:
        pkts.append(IP(src="192.0.2.2", dst="192.0.2.1") / UDP(sport=port, dport=port) / Raw(d))
    wrpcap(path, pkts)


def tshark_fields(pcap):
    """Per packet, the list of (field name, show value) tshark decoded."""
    tshark = need_tool("tshark", "apt-get install tshark")
    p = subprocess.run([tshark, "-r", pcap, "-T", "pdml"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    packets = []
    for pkt in ET.fromstring(p.stdout).iter("packet"):
        fields = [(f.get("name"), f.get("show")) for f in pkt.iter("field")]
        protos = [pr.get("name") for pr in pkt.iter("proto")]
        packets.append((protos, fields))
    return packets


def field(fields, name):
    return [v for n, v in fields if n == name]


@pytest.mark.parametrize("req,exch,fl", CASES, ids=["informational", "create_child_sa", "ike_auth"])
def test_tshark_decodes_the_invalid_ike_spi_answer(tmp_path, secret_file, req, exch, fl):
    ans = qcdtool_answer(secret_file, req)
    pcap = str(tmp_path / "a.pcap")
    write_pcap(pcap, [(ans, 500)])
    (protos, f), = tshark_fields(pcap)
    assert "isakmp" in protos
    assert "_ws.malformed" not in protos and not any(n == "_ws.malformed" for n, _ in f)
    assert field(f, "isakmp.ispi") == [SPI_I.hex(":")] or field(f, "isakmp.ispi") == [SPI_I.hex()]
    assert field(f, "isakmp.exchangetype") == [str(exch)]
    assert int(field(f, "isakmp.flags")[0], 16) == fl
    assert int(field(f, "isakmp.messageid")[0], 16) == wire.parse(req).msg_id
    assert field(f, "isakmp.length") == [str(len(ans))]
    assert field(f, "isakmp.notify.msgtype") == ["4", "16419"]
    assert field(f, "isakmp.notify.protoid") == ["0", "1"]
    assert field(f, "isakmp.spisize") == ["0", "0"]
    tok = field(f, "isakmp.notify.data.qcd.token_secret_data")
    assert [t.replace(":", "") for t in tok] == [TOKEN.hex()]


def test_tshark_decodes_the_udp_4500_answer_and_several_tokens(tmp_path):
    # The §8.2 answer with two candidate tokens (secret rollover), framed
    # with the non-ESP marker on UDP 4500.
    toks = [TOKEN, make_token(bytes(32), SPI_I, SPI_R)]
    ans = wire.answer_invalid_spi(b"\xc0\x01\x02\x03", SPI_I, SPI_R, True, toks)
    pcap = str(tmp_path / "b.pcap")
    write_pcap(pcap, [(bytes(4) + ans, 4500)])
    (protos, f), = tshark_fields(pcap)
    assert "isakmp" in protos and "_ws.malformed" not in protos
    assert "udpencap" in protos  # the non-ESP marker was recognised
    assert field(f, "isakmp.notify.msgtype") == ["11", "16419", "16419"]
    assert int(field(f, "isakmp.flags")[0], 16) == 0x08
    assert int(field(f, "isakmp.messageid")[0], 16) == 0
    assert [t.replace(":", "") for t in field(f, "isakmp.notify.data.qcd.token_secret_data")] == [t.hex() for t in toks]
    assert field(f, "isakmp.notify.data")[0].replace(":", "") == "c0010203"


def test_tshark_check_can_fail(tmp_path):
    # A truncated answer must show up as malformed to tshark, or the checks
    # above prove nothing.
    ans = wire.answer_invalid_spi(b"\xc0\x01\x02\x03", SPI_I, SPI_R, True, [TOKEN])
    pcap = str(tmp_path / "c.pcap")
    write_pcap(pcap, [(ans[:-5], 500)])
    (protos, f), = tshark_fields(pcap)
    assert "_ws.malformed" in protos or any(n.startswith("_ws.expert") for n, _ in f)


@pytest.mark.parametrize("req,exch,fl", CASES, ids=["informational", "create_child_sa", "ike_auth"])
def test_scapy_decodes_the_invalid_ike_spi_answer(secret_file, req, exch, fl):
    from scapy.contrib.ikev2 import IKEv2, IKEv2_Notify

    ans = qcdtool_answer(secret_file, req)
    p = IKEv2(ans)
    assert (p.init_SPI, p.resp_SPI, p.exch_type, int(p.flags), p.id, p.length) == (SPI_I, SPI_R, exch, fl, wire.parse(req).msg_id, len(ans))
    notes = [n for n in p.iterpayloads() if isinstance(n, IKEv2_Notify)]
    assert [(n.type, n.proto, n.SPIsize, n.length) for n in notes] == [(4, 0, 0, 8), (16419, 1, 0, 40)]
    assert notes[1].get_field("type").i2repr(notes[1], notes[1].type) == "QUICK_CRASH_DETECTION"
    assert bytes(notes[1].notify) == TOKEN
    assert not p.haslayer("Raw") and not p.haslayer("Padding")


def test_scapy_decodes_the_answer_through_udp_4500(secret_file):
    from scapy.contrib.ikev2 import IKEv2_Notify
    from scapy.layers.inet import IP, UDP

    ans = qcdtool_answer(secret_file, bytes(4) + request(), "192.0.2.1:4500")
    assert ans[:4] == bytes(4)
    pkt = IP(bytes(IP(src="192.0.2.2", dst="192.0.2.1") / UDP(sport=4500, dport=4500) / ans))
    notes = [n for n in pkt.iterpayloads() if isinstance(n, IKEv2_Notify)]
    assert [n.type for n in notes] == [4, 16419] and bytes(notes[1].notify) == TOKEN


def test_notify_names_are_ianas_as_scapy_has_them():
    # qcdhost.names (qcdtool decode, and qcd-peer's log) names every notify type
    # IANA assigned; scapy's IKEv2 layer is an independent copy of that table.
    from scapy.contrib.ikev2 import IKEv2NotifyMessageTypes

    from qcdhost import names

    theirs = {n: v.replace("IV2_NOTIFY_", "") for n, v in IKEv2NotifyMessageTypes.items()}
    assert names.NOTIFY_NAMES == theirs
    assert names.NOTIFY_NAMES[16396] == "MOBIKE_SUPPORTED" and names.NOTIFY_NAMES[16410] == "TICKET_REQUEST"
    # The device engine's own short table names them as IANA does, and
    # covers what strongSwan sends and issue 11 saw.
    from ike import const

    assert all(theirs[n] == v for n, v in const.NOTIFY_NAMES.items())
    assert {16396, 16399, 16406, 16410, 16430, 16431} <= set(const.NOTIFY_NAMES)


def test_qcd_peer_logs_a_peers_notify_types_by_name():
    # A message with notifies the device engine's table does not name:
    # qcd-peer's log line names them.
    from ike import const
    from ike.engine import Engine
    from qcdhost import peer

    saved = dict(const.NOTIFY_NAMES)
    try:
        assert const.notify_name(16420) == "N_16420"  # not in the device's short table
        peer.lend_names()
        lines = []
        eng = Engine.__new__(Engine)
        eng._log = lines.append
        n = lambda t: (const.PT_N, b"\x00\x00" + t.to_bytes(2, "big"))  # noqa: E731
        eng.log_msg("in", const.IKE_AUTH, False, 1, [n(16396), n(16420), n(16419)], ("192.0.2.1", 4500))
        assert "[N(MOBIKE_SUPPORTED) N(IKEV2_MESSAGE_ID_SYNC_SUPPORTED) N(QUICK_CRASH_DETECTION)]" in lines[0], lines
    finally:
        const.NOTIFY_NAMES.clear()
        const.NOTIFY_NAMES.update(saved)

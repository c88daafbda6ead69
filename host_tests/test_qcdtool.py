# qcdtool: the field engineer's CLI (token, respond, decode).
import subprocess
import sys

import pytest
from support import QCDTOOL
from qcd import wire
from qcd.tokens import ip_bytes, make_token

SECRET = bytes(range(7, 39))
I, R = bytes.fromhex("0a0b0c0d0e0f1011"), bytes.fromhex("2122232425262728")


def run(*args):
    return subprocess.run([sys.executable, QCDTOOL, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def sf(tmp_path):
    p = tmp_path / "s.bin"
    p.write_bytes(SECRET)
    return str(p)


def req(**kw):
    a = dict(exchange=wire.INFORMATIONAL, flags=wire.FLAG_I, msg_id=3)
    a.update(kw)
    return wire.build(I, R, a["exchange"], a["flags"], a["msg_id"], [(wire.PT_SK, bytes(32))])


def test_token_prints_the_5_1_token(sf):
    p = run("token", "--secret-file", sf, "--spi-i", I.hex(), "--spi-r", R.hex())
    assert p.returncode == 0 and p.stdout == make_token(SECRET, I, R).hex() + "\n"


def test_token_with_peer_prints_the_5_2_token(sf):
    p = run("token", "--secret-file", sf, "--spi-i", I.hex(), "--spi-r", R.hex(), "--peer", "2001:db8::5")
    assert p.stdout.strip() == make_token(SECRET, I, R, ip_bytes("2001:db8::5")).hex()


def test_respond_prints_the_answer(sf):
    p = run("respond", "--secret-file", sf, "--from", "192.0.2.1:500", req().hex())
    assert p.returncode == 0, p.stderr
    a = wire.parse(bytes.fromhex(p.stdout.strip()))
    assert a.notifies() == [(wire.INVALID_IKE_SPI, 0, b"", b""), (wire.QUICK_CRASH_DETECTION, 1, b"", make_token(SECRET, I, R))]


def test_respond_keeps_the_non_esp_marker(sf):
    p = run("respond", "--secret-file", sf, "--from", "192.0.2.1:4500", "00000000" + req().hex())
    out = bytes.fromhex(p.stdout.strip())
    assert out[:4] == bytes(4) and wire.parse(out[4:]) is not None


def test_respond_style_5_2_binds_the_source_address(sf):
    p = run("respond", "--secret-file", sf, "--from", "[2001:db8::9]:500", "--style", "5.2", req().hex())
    a = wire.parse(bytes.fromhex(p.stdout.strip()))
    assert a.notifies()[1][3] == make_token(SECRET, I, R, ip_bytes("2001:db8::9"))


@pytest.mark.parametrize(
    "datagram,reason",
    [
        (req(flags=wire.FLAG_R).hex(), "response"),
        (wire.build(I, R, wire.INFORMATIONAL, wire.FLAG_I, 1, [(wire.PT_N, wire.notify_body(wire.INITIAL_CONTACT))]).hex(), "not protected"),
        (req(exchange=wire.IKE_SA_INIT).hex(), "IKE_SA_INIT"),
        (req()[:-1].hex(), "Length differs"),
        ("00", "not a well-formed"),
    ],
)
def test_respond_stays_silent_with_a_reason(sf, datagram, reason):
    p = run("respond", "--secret-file", sf, "--from", "192.0.2.1:500", datagram)
    assert p.returncode == 1 and p.stdout == ""
    assert reason in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_decode_names_notify_types(sf):
    ans = run("respond", "--secret-file", sf, "--from", "192.0.2.1:500", req().hex()).stdout.strip()
    p = run("decode", ans)
    assert p.returncode == 0
    assert "INVALID_IKE_SPI (4)" in p.stdout and "QUICK_CRASH_DETECTION (16419)" in p.stdout
    assert "flags R (0x20)" in p.stdout


def test_decode_malformed_exits_1():
    p = run("decode", "0102")
    assert p.returncode == 1 and "malformed" in p.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["token", "--secret-file", "/nonexistent/secret", "--spi-i", "00" * 8, "--spi-r", "00" * 8],
        ["token", "--spi-i", "00" * 8, "--spi-r", "00" * 8],
        ["token", "--secret-file", "SF", "--spi-i", "0011", "--spi-r", "00" * 8],
        ["token", "--secret-file", "SF", "--spi-i", "zz" * 8, "--spi-r", "00" * 8],
        ["token", "--secret-file", "SF", "--spi-i", "01" * 8, "--spi-r", "00" * 8, "--peer", "not-an-ip"],
        ["respond", "--secret-file", "SF", "--from", "192.0.2.1", "00"],
        ["respond", "--secret-file", "SHORT", "--from", "192.0.2.1:500", "00"],
        ["nonsense"],
        [],
    ],
)
def test_wrong_arguments_give_one_line_and_exit_2(sf, tmp_path, args):
    short = tmp_path / "short.bin"
    short.write_bytes(b"x" * 31)
    args = [sf if a == "SF" else str(short) if a == "SHORT" else a for a in args]
    p = run(*args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("qcdtool: ")
    assert SECRET.hex() not in p.stderr

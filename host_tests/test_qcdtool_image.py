# qcdtool for the qcd partition: image new, provision, inspect, and
# --image as the key source of token and respond. Each test runs the real
# command line; a device is the store on the flash emulator over the same image
# file, in another process (a reboot is a new process on the same image).
import hashlib
import json
import subprocess
import sys

import support
from qcd import wire
from qcd.tokens import make_token

QCDTOOL = support.QCDTOOL
SPI_I = "0102030405060708"
SPI_R = "1112131415161718"

DEVICE = r"""
import sys
from qcdhost.emu import flash as flashemu
from qcd.store import Store
e = flashemu.FlashEmu(flashemu.FileBacking(sys.argv[1]))
s = Store(e, lambda n: bytes(range(n)))
for arg in sys.argv[2:]:
    spi, ip = arg.split("@")
    s.child_put(int(spi, 16), bytes.fromhex(%(spi_i)r), bytes.fromhex(%(spi_r)r), True, bytes(int(x) for x in ip.split(".")))
e.backing.flush()
print(s.boot_count, ",".join(s.status()["secrets"]))
""" % {"spi_i": SPI_I, "spi_r": SPI_R}


def qcdtool(*args):
    return subprocess.run([sys.executable, QCDTOOL] + [str(a) for a in args], capture_output=True, text=True, timeout=120)


def device(image, *children):
    p = subprocess.run([sys.executable, "-c", DEVICE, str(image)] + list(children), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    boot, fps = p.stdout.split()
    return int(boot), fps.split(",")


def fp(secret):
    return hashlib.sha256(secret).digest()[:8].hex()


def one_line_error(p):
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert p.stderr.startswith("qcdtool: ") and p.stderr.count("\n") == 1, p.stderr


def test_image_new_writes_an_erased_partition_and_its_sidecar(tmp_path):
    img = tmp_path / "p.img"
    p = qcdtool("image", "new", img, "--blocks", 8)
    assert p.returncode == 0, p.stderr
    assert img.read_bytes() == b"\xff" * (8 * 4096)
    meta = json.loads((tmp_path / "p.img.emu.json").read_text())
    assert meta["encrypted"] is False and meta["erases"] == [0] * 8
    p = qcdtool("image", "new", tmp_path / "e.img", "--encrypted")
    assert p.returncode == 0
    assert (tmp_path / "e.img").stat().st_size == 16 * 4096  # the 64 KiB reference
    assert json.loads((tmp_path / "e.img.emu.json").read_text())["encrypted"] is True


def test_image_new_refuses_bad_arguments_in_one_line(tmp_path):
    img = tmp_path / "p.img"
    qcdtool("image", "new", img)
    one_line_error(qcdtool("image", "new", img))  # exists
    assert qcdtool("image", "new", img, "--force").returncode == 0
    one_line_error(qcdtool("image", "new", tmp_path / "x.img", "--blocks", 3))
    one_line_error(qcdtool("image", "new", tmp_path / "x.img", "--blocks", "many"))
    one_line_error(qcdtool("image", "new", tmp_path / "no" / "dir.img"))


def test_provision_then_the_device_answers_with_that_secret(tmp_path):
    for enc in ([], ["--encrypted"]):
        img = tmp_path / ("p%d.img" % len(enc))
        sec = tmp_path / "s.bin"
        secret = hashlib.sha256(b"gateway pair").digest()
        sec.write_bytes(secret)
        assert qcdtool("image", "new", img, "--blocks", 4, *enc).returncode == 0
        p = qcdtool("provision", img, "--secret-file", sec)
        assert p.returncode == 0, p.stderr
        assert fp(secret) in p.stdout and "written" in p.stdout
        # The device boots on that image (another process) and holds it.
        boot, fps = device(img)
        assert (boot, fps) == (1, [fp(secret)])
        boot, fps = device(img)
        assert (boot, fps) == (2, [fp(secret)])
        # token --image and token --secret-file agree.
        a = qcdtool("token", "--image", img, "--spi-i", SPI_I, "--spi-r", SPI_R)
        b = qcdtool("token", "--secret-file", sec, "--spi-i", SPI_I, "--spi-r", SPI_R)
        assert a.returncode == 0 and a.stdout == b.stdout and len(a.stdout.split()) == 1


def test_provision_again_adds_a_generation(tmp_path):
    img = tmp_path / "p.img"
    qcdtool("image", "new", img, "--blocks", 4)
    s1, s2 = tmp_path / "1.bin", tmp_path / "2.bin"
    s1.write_bytes(b"\x01" * 32)
    s2.write_bytes(b"\x02" * 32)
    assert qcdtool("provision", img, "--secret-file", s1).returncode == 0
    p = qcdtool("provision", img, "--secret-file", s1)
    assert p.returncode == 0 and "already the current secret" in p.stdout
    p = qcdtool("provision", img, "--secret-file", s2)
    assert p.returncode == 0 and "added as the current secret" in p.stdout
    t = qcdtool("token", "--image", img, "--spi-i", SPI_I, "--spi-r", SPI_R)
    assert len(t.stdout.split()) == 2  # one token per held secret, current first
    j = json.loads(qcdtool("inspect", img, "--json").stdout)
    assert [g.split()[2] for g in j["secrets"]] == [fp(b"\x02" * 32), fp(b"\x01" * 32)]


def test_inspect_decodes_what_the_device_wrote(tmp_path):
    img = tmp_path / "p.img"
    qcdtool("image", "new", img, "--blocks", 6, "--encrypted")
    device(img, "c0ffee01@192.0.2.7", "c0ffee02@198.51.100.9")
    p = qcdtool("inspect", img)
    assert p.returncode == 0, p.stderr
    assert "encrypted (emulator sidecar)" in p.stdout
    assert "c0ffee01 -> IKE SA %s/%s, we are initiator, peer 192.0.2.7" % (SPI_I, SPI_R) in p.stdout
    assert "boot count: 1" in p.stdout
    assert "damage: none" in p.stdout
    assert fp(bytes(range(32))) in p.stdout  # the device's secret, by fingerprint
    assert bytes(range(32)).hex() not in p.stdout  # never the secret itself
    j = json.loads(qcdtool("inspect", img, "--json").stdout)
    assert [c["spi"] for c in j["child_map"]] == ["c0ffee01", "c0ffee02"]
    assert j["block_state"][0]["state"] == "live" and j["block_state"][0]["emulator_erases"] == 1
    assert j["damage"] == []


def test_respond_with_image_answers_esp_from_the_map(tmp_path):
    img = tmp_path / "p.img"
    qcdtool("image", "new", img, "--blocks", 4)
    device(img, "c0ffee01@192.0.2.7")
    esp = "c0ffee01" + "00000001" + "00" * 32
    p = qcdtool("respond", "--image", img, "--from", "192.0.2.7:4500", esp)
    assert p.returncode == 0, p.stderr
    d = qcdtool("decode", p.stdout.strip())
    assert "INVALID_SPI" in d.stdout and "QUICK_CRASH_DETECTION" in d.stdout
    p = qcdtool("respond", "--image", img, "--from", "192.0.2.7:4500", "c0ffee09" + "00000001" + "00" * 32)
    assert p.returncode == 1


def test_inspect_never_writes(tmp_path):
    img = tmp_path / "p.img"
    qcdtool("image", "new", img, "--blocks", 4)
    device(img, "c0ffee01@192.0.2.7")
    before = img.read_bytes(), (tmp_path / "p.img.emu.json").read_bytes()
    assert qcdtool("inspect", img).returncode == 0
    assert qcdtool("token", "--image", img, "--spi-i", SPI_I, "--spi-r", SPI_R).returncode == 0
    assert (img.read_bytes(), (tmp_path / "p.img.emu.json").read_bytes()) == before


def test_inspect_a_raw_dump_without_sidecar(tmp_path):
    # What `esptool read-flash` gives: the bytes only. A plain partition decodes.
    img = tmp_path / "p.img"
    qcdtool("image", "new", img, "--blocks", 4)
    device(img, "c0ffee01@192.0.2.7")
    dump = tmp_path / "dump.bin"
    dump.write_bytes(img.read_bytes())
    p = qcdtool("inspect", dump)
    assert p.returncode == 0 and "raw dump, read as plain flash" in p.stdout and "c0ffee01" in p.stdout
    assert not (tmp_path / "dump.bin.emu.json").exists()
    # An encrypted partition's raw bytes are ciphertext: nothing to decode.
    qcdtool("image", "new", tmp_path / "e.img", "--blocks", 4, "--encrypted")
    device(tmp_path / "e.img")
    dump.write_bytes((tmp_path / "e.img").read_bytes())
    p = qcdtool("inspect", dump)
    assert p.returncode == 1 and "encrypted partition" in p.stderr


def test_inspect_blank_garbage_and_bad_files(tmp_path):
    img = tmp_path / "p.img"
    qcdtool("image", "new", img, "--blocks", 4)
    p = qcdtool("inspect", img)
    assert p.returncode == 1 and "no QCD secret" in p.stderr
    (tmp_path / "junk.img").write_bytes(hashlib.sha256(b"x").digest() * 512)
    p = qcdtool("inspect", tmp_path / "junk.img")
    assert p.returncode == 1 and "4 blocks" in p.stdout
    (tmp_path / "short.img").write_bytes(b"\xff" * 5000)
    one_line_error(qcdtool("inspect", tmp_path / "short.img"))
    one_line_error(qcdtool("inspect", tmp_path / "missing.img"))
    one_line_error(qcdtool("token", "--image", img, "--spi-i", SPI_I, "--spi-r", SPI_R))  # no secret in it
    one_line_error(qcdtool("token", "--image", img, "--secret-file", img, "--spi-i", SPI_I, "--spi-r", SPI_R))
    one_line_error(qcdtool("provision", img, "--secret-file", tmp_path / "short.img"))
    one_line_error(qcdtool("provision", tmp_path / "missing.img", "--secret-file", img))


def test_respond_prints_one_line_per_answer_when_the_generation_is_unknown(tmp_path):
    # Two secrets and an IKE SA the map does not know: the device would send
    # one answer per candidate token, each led by another (docs/hook.md §3).
    img = tmp_path / "p.img"
    qcdtool("image", "new", img, "--blocks", 4)
    for n in (1, 2):
        (tmp_path / ("%d.bin" % n)).write_bytes(bytes([n]) * 32)
        assert qcdtool("provision", img, "--secret-file", tmp_path / ("%d.bin" % n)).returncode == 0
    req = wire.build(bytes.fromhex(SPI_I), bytes.fromhex(SPI_R), wire.INFORMATIONAL, wire.FLAG_I, 1, [(wire.PT_SK, bytes(32))])
    p = qcdtool("respond", "--image", img, "--from", "192.0.2.1:500", req.hex())
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split()
    toks = [[n[3] for n in wire.parse(bytes.fromhex(h)).notifies() if n[0] == wire.QUICK_CRASH_DETECTION] for h in lines]
    t1, t2 = (make_token(bytes([n]) * 32, bytes.fromhex(SPI_I), bytes.fromhex(SPI_R)) for n in (1, 2))
    assert toks == [[t2, t1], [t1, t2]]

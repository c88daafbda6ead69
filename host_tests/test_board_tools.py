# The host side of getting onto a board, without a board: esptool command
# lines checked by esptool's own parser, whole-flash images made by esptool
# merge-bin (the bytes write-flash puts in the flash), the flash and dump
# paths of qcdboard, package.json for mip, and qcdhost.mpy_build.
import json
import os
import subprocess
import sys

import pytest
from support import QCDBOARD, ROOT, TOOLS

from qcdhost import devset
from qcdhost.esp import boards, esptool_cmd, image, partitions
from qcdhost.esp.boards import PARTITION_TABLE_OFFSET

BOARDS = sorted(boards.BOARDS)


def qcdboard(*args):
    return subprocess.run([sys.executable, QCDBOARD] + list(args), capture_output=True, text=True, timeout=300)


@pytest.fixture
def table_bin(tmp_path):
    def make(name):
        p = tmp_path / ("%s-table.bin" % name)
        p.write_bytes(partitions.to_binary(partitions.load(boards.get(name).csv)))
        return str(p)

    return make


@pytest.mark.parametrize("name", BOARDS)
def test_write_flash_command_parses_with_esptool(name, table_bin):
    b = boards.get(name)
    args = esptool_cmd.write_flash(b, "/dev/ttyUSB0", [(PARTITION_TABLE_OFFSET, table_bin(name))], erase_all=True)
    cmd, params = esptool_cmd.parse(args)
    assert cmd == "write-flash"
    assert params["_group"]["chip"] == b.chip and params["_group"]["port"] == "/dev/ttyUSB0"
    assert params["flash_size"] == "4MB" and params["erase_all"] is True
    assert [a for a, _ in params["addr_filename"]] == [0x8000]


def test_esptool_parser_refuses_what_esptool_would(tmp_path):
    # The parse check is only worth something if it can say no.
    b = boards.get("QCD_ESP32")
    with pytest.raises(Exception, match="No such file"):
        esptool_cmd.parse(esptool_cmd.write_flash(b, "/dev/ttyUSB0", [(0x8000, str(tmp_path / "absent.bin"))]))
    with pytest.raises(Exception, match="esp99"):
        esptool_cmd.parse(["--chip", "esp99", "read-flash", "0", "16", "x.bin"])


@pytest.mark.parametrize("name", BOARDS)
def test_read_flash_command_reads_the_qcd_partition(name):
    b = boards.get(name)
    q = partitions.find(partitions.load(b.csv), "qcd")
    cmd, params = esptool_cmd.parse(esptool_cmd.read_flash(b, "/dev/ttyUSB0", q.offset, q.size, "out.bin"))
    assert cmd == "read-flash"
    assert (params["address"], params["size"], params["output"]) == (0x200000, 0x10000, "out.bin")


@pytest.mark.parametrize("name", BOARDS)
def test_whole_flash_image_holds_the_table_write_flash_writes(name, tmp_path, table_bin):
    # merge-bin takes write-flash's ADDRESS FILE pairs; its output is the
    # flash after write-flash on an erased chip.
    b = boards.get(name)
    qcd_img = tmp_path / "qcd.img"
    qcd_img.write_bytes(bytes(range(256)) * 16)
    out = tmp_path / "flash.bin"
    image.build(b, str(out), [(0x200000, str(qcd_img))])
    data = out.read_bytes()
    assert len(data) == b.flash_size
    with open(table_bin(name), "rb") as f:
        pt = f.read()
    assert data[0x8000 : 0x8000 + len(pt)] == pt
    assert data[:0x8000] == b"\xff" * 0x8000
    assert data[0x200000 : 0x201000] == qcd_img.read_bytes()
    assert data[0x201000:] == b"\xff" * (b.flash_size - 0x201000)
    p, part = image.read_partition(str(out), "qcd")
    assert (p.offset, p.size, part[:4096]) == (0x200000, 0x10000, qcd_img.read_bytes())


def test_flash_dry_run_prints_a_parsed_command_with_firmware_split(tmp_path):
    # A combined firmware.bin: bootloader at 0x1000 (ESP32), table at 0x8000,
    # app at 0x10000, each an ESP image (0xE9). The stand-in bytes are not a
    # firmware; what is checked is where each piece goes.
    fw = bytearray(b"\xff" * (0x10000 - 0x1000 + 0x100))
    fw[0] = 0xE9
    fw[0x10000 - 0x1000] = 0xE9
    fw[0x10000 - 0x1000 + 1 : 0x10000 - 0x1000 + 4] = b"APP"
    path = tmp_path / "firmware.bin"
    path.write_bytes(bytes(fw))
    r = qcdboard("flash", "--port", "/dev/ttyUSB0", "--firmware", str(path), "--dry-run")
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip().splitlines()[-1]
    assert line.startswith("esptool --chip esp32 --port /dev/ttyUSB0 --baud 460800 write-flash --flash-size 4MB 0x1000 ")
    addrs = line.split()[line.split().index("4MB") + 1 :: 2]
    assert addrs == ["0x1000", "0x8000", "0x10000"]
    # The split pieces are removed after the dry run.
    assert sorted(os.listdir(tmp_path)) == ["firmware.bin"]


def test_flash_refuses_what_is_not_a_firmware(tmp_path):
    path = tmp_path / "firmware.bin"
    path.write_bytes(b"\0" * 0x20000)
    r = qcdboard("flash", "--port", "/dev/ttyUSB0", "--firmware", str(path), "--dry-run")
    assert r.returncode == 2 and "not a combined MicroPython firmware" in r.stderr
    r = qcdboard("flash", "--port", "/dev/ttyUSB0", "--firmware", str(tmp_path), "--dry-run")
    assert r.returncode == 2 and "not an ESP-IDF build directory" in r.stderr


def test_table_command_writes_the_binary(tmp_path):
    out = tmp_path / "t.bin"
    r = qcdboard("table", "--board", "QCD_ESP32_S3", "--bin", str(out))
    assert r.returncode == 0, r.stderr
    assert "registered by MicroPython at boot" in r.stdout
    assert out.read_bytes() == partitions.to_binary(partitions.load(boards.get("QCD_ESP32_S3").csv))


def test_package_json_is_current_and_lists_every_device_module():
    r = subprocess.run([sys.executable, os.path.join(TOOLS, "package_json.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(ROOT, "package.json")) as f:
        pkg = json.load(f)
    assert ["hmac", "latest"] in pkg["deps"]
    # Every .py under lib/ (lib/ is the device set), found here by walking
    # the tree rather than through qcdhost.devset.
    srcs = set()
    for d, dirs, files in os.walk(os.path.join(ROOT, "lib")):
        dirs[:] = [x for x in dirs if x != "__pycache__"]
        srcs |= {os.path.relpath(os.path.join(d, f), ROOT) for f in files if f.endswith(".py")}
    assert {"lib/qcd/hook.py", "lib/ike/engine.py"} <= srcs
    assert {src for _, src in pkg["urls"]} == srcs
    for dest, src in pkg["urls"]:
        assert src == "lib/" + dest and os.path.isfile(os.path.join(ROOT, src))


def test_mpy_build_compiles_lib_for_both_architectures(tmp_path):
    r = subprocess.run([sys.executable, "-m", "qcdhost.mpy_build", "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for arch in ("xtensawin", "rv32imc"):
        mpys = [f for f in os.listdir(tmp_path / arch / "qcd") if f.endswith(".mpy")]
        assert "hook.mpy" in mpys
        # mpy v6: byte 0 'M', byte 1 version 6.
        assert (tmp_path / arch / "qcd" / "hook.mpy").read_bytes()[:2] == b"M\x06"
    # Every package of lib/ is compiled whole and reported with its total;
    # the target is for lib/qcd.
    lines = r.stdout.splitlines()
    for pkg in devset.packages():
        assert os.path.isdir(tmp_path / "xtensawin" / pkg), pkg
        assert len([x for x in lines if x.split()[:2] == [pkg, "TOTAL"]]) == 1, pkg
    total = [x for x in lines if x.split()[:2] == ["qcd", "TOTAL"]]
    assert "target < 12288 B" in total[0]
    assert not any("host only" in x for x in lines)

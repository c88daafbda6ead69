# The virtual board (vboard): the MicroPython WebAssembly port on a
# pseudo-terminal with an ESP32's flash. Driven with the real mpremote, as a
# user drives a board: what works against it works against a board's REPL.
import hashlib
import os
import subprocess

import pytest
from vboard_util import VBoard

from support import ROOT

from qcdhost.esp.remote import MPY_LEAVE_OFF, package_files
from qcdhost.paths import WASM_DIR


@pytest.fixture(scope="module")
def vb(tmp_path_factory):
    b = VBoard(tmp_path_factory.mktemp("vboard")).start()
    yield b
    b.stop()


def test_partitions_come_from_the_flash_image(vb):
    out = vb.exec(
        "import esp32\n"
        "T = esp32.Partition.TYPE_DATA\n"
        "print([p.info() for p in esp32.Partition.find(T)])\n"
        "print(esp32.Partition.find(label='qcd'))\n"  # find() defaults to TYPE_APP
        "print(esp32.Partition('qcd').info(), esp32.Partition(esp32.Partition.RUNNING).info()[4])\n"
    )
    lines = out.strip().splitlines()
    assert lines[0] == (
        "[(1, 2, 36864, 24576, 'nvs', False), (1, 1, 61440, 4096, 'phy_init', False), "
        "(1, 6, 2097152, 65536, 'qcd', True), (1, 129, 2162688, 2031616, 'vfs', False)]"
    )
    assert lines[1] == "[]"
    assert lines[2] == "(1, 6, 2097152, 65536, 'qcd', True) factory"


def test_partition_obeys_nor_and_esp_idf_rules(vb):
    # nvs: a partition without the `encrypted` flag, so vboard.mjs's NOR
    # model (a program ANDs bits in, as the chip does) rather than the flash
    # emulator, which refuses such a program (test_flash_emulator_...).
    out = vb.exec(
        "import esp32\n"
        "p = esp32.Partition.find(esp32.Partition.TYPE_DATA, label='nvs')[0]\n"
        "print(p.ioctl(4, 0), p.ioctl(5, 0), p.ioctl(6, 5))\n"
        "p.writeblocks(5, b'\\x0f' * 16, 0)\n"
        "p.writeblocks(5, b'\\xf1' * 16, 0)\n"  # programming only clears bits
        "b = bytearray(32)\n"
        "p.readblocks(5, b, 0)\n"
        "print(b.hex())\n"
        "for args in ((7 * 4096, 16), (5 * 4096 + 8, 4096)):\n"
        "    try:\n"
        "        p.ioctl(6, args[0] // 4096) if args[1] == 16 else p.writeblocks(0, bytes(args[1]), args[0])\n"
        "    except OSError as e:\n"
        "        print(e.args)\n"
        "print(esp32.Partition('nvs', 512).ioctl(6, 0))\n"
        "p.writeblocks(5, bytes(4096))\n"  # simple form: erase, then write
        "p.readblocks(5, b)\n"
        "print(b.hex())\n"
    )
    lines = out.strip().splitlines()
    assert lines[0] == "6 4096 0"
    assert lines[1] == "01" * 16 + "ff" * 16
    assert lines[2] == "(-258, 'ESP_ERR_INVALID_ARG')"  # erase starting past the end
    assert lines[3] == "(-260, 'ESP_ERR_INVALID_SIZE')"  # write runs past the end
    assert lines[4] == "-22"  # ioctl erase with block_size != 4096 returns -EINVAL
    assert lines[5] == "00" * 32
    # The flash image file is what changed.
    with open(vb.flash, "rb") as f:
        f.seek(0x9000 + 5 * 4096)
        assert f.read(32) == bytes(32)


def test_mpremote_repl_is_interactive(vb):
    import pty
    import select
    import sys
    import time

    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-m", "mpremote", "connect", vb.tty, "repl"])
    out = b""

    def read_until(marker, timeout=30):
        nonlocal out
        end = time.monotonic() + timeout
        while marker not in out and time.monotonic() < end:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    return
    try:
        read_until(b"Ctrl-]")
        # Until mpremote has put its terminal in raw mode, a CR would be
        # turned into LF by the line discipline: wait for the prompt.
        for _ in range(30):
            time.sleep(1)
            os.write(fd, b"\r")
            read_until(b">>> ", timeout=1)
            if b">>> " in out:
                break
        os.write(fd, b"6*7\r")
        # the echo and the answer: a bare b"42" also matches the banner's
        # tty path when pytest's temp folder is pytest-42, -142, -420...
        read_until(b"6*7\r\n42")
        os.write(fd, b"\x1d")  # Ctrl-]: leave mpremote
    finally:
        os.waitpid(pid, 0)
        os.close(fd)
    # The port prints "\n" where a board's UART REPL prints "\r\n".
    assert b">>> 6*7\r\n42\n" in out or b">>> 6*7\r\n42\r\n" in out, out


def test_mpremote_filesystem_commands(vb, tmp_path):
    src = tmp_path / "hello.py"
    src.write_text("X = 42\n")
    assert vb.mpremote("fs", "mkdir", ":sub").returncode == 0
    r = vb.mpremote("fs", "mkdir", ":sub")
    assert r.returncode == 1 and "File exists" in r.stderr  # errno mapped as on a board
    assert vb.mpremote("fs", "cp", str(src), ":sub/hello.py").returncode == 0
    r = vb.mpremote("fs", "ls", ":sub")
    assert "7 hello.py" in r.stdout
    r = vb.mpremote("fs", "cat", ":sub/hello.py")
    assert r.stdout.endswith("X = 42\n")
    r = vb.mpremote("fs", "sha256sum", ":sub/hello.py")
    assert hashlib.sha256(b"X = 42\n").hexdigest() in r.stdout
    r = vb.mpremote("fs", "cat", ":nope.py")
    assert r.returncode == 1 and "No such file" in r.stderr
    r = vb.mpremote("fs", "ls", ":")
    for hidden in ("dev", "proc", "tmp", "home"):
        assert hidden not in r.stdout.split()
    r = vb.mpremote("df")
    assert "2031616" in r.stdout  # the vfs partition's size
    # Files are on the host side of the board's filesystem...
    assert open(os.path.join(vb.fs, "sub", "hello.py")).read() == "X = 42\n"
    assert vb.exec("import sys\nsys.path.append('/sub')\nimport hello\nprint(hello.X)").strip() == "42"
    assert vb.mpremote("fs", "rm", "-r", ":sub").returncode == 0
    assert not os.path.exists(os.path.join(vb.fs, "sub"))


def test_mpremote_repl_commands(vb, tmp_path):
    assert vb.mpremote("eval", "6 * 7").stdout.strip() == "42"
    script = tmp_path / "s.py"
    script.write_text("import os\nprint(len(os.urandom(16)))\n")
    assert vb.mpremote("run", str(script)).stdout.strip() == "16"
    # An exception on the board: mpremote prints it and exits 1.
    r = vb.mpremote("exec", "raise ValueError('boom')")
    assert r.returncode == 1 and "ValueError: boom" in r.stdout + r.stderr
    # mpremote soft-resets on connect: globals go, reset_cause says SOFT.
    vb.exec("KEEP = 1")
    assert vb.mpremote("resume", "exec", "print('KEEP' in globals())").stdout.strip() == "True"
    assert vb.exec("import machine\nprint('KEEP' in globals(), machine.reset_cause())").strip() == "False 5"
    assert vb.mpremote("rtc", "--set").returncode == 0
    assert vb.mpremote("rtc").stdout.startswith("(20")


def test_hard_reset_and_power_cycle_keep_flash_and_files(vb, tmp_path):
    vb.exec(
        "import esp32\n"
        "p = esp32.Partition.find(esp32.Partition.TYPE_DATA, label='qcd')[0]\n"
        "p.writeblocks(3, b'persist!' * 512)\n"
        "f = open('/keep.txt', 'w')\nf.write('kept')\nf.close()"
    )
    assert vb.mpremote("reset").returncode == 0
    vb.power_cycle()
    out = vb.mpremote(
        "resume", "exec",
        "import esp32, machine\n"
        "p = esp32.Partition.find(esp32.Partition.TYPE_DATA, label='qcd')[0]\n"
        "b = bytearray(8)\np.readblocks(3, b)\n"
        "print(bytes(b), open('/keep.txt').read(), machine.reset_cause())",
    ).stdout
    assert out.strip() == "b'persist!' kept 1"  # PWRON_RESET after a power cycle


def test_watchdog_resets_an_unfed_board(vb):
    vb.exec("import machine\nmachine.WDT(timeout=300)")
    import time

    time.sleep(1.5)
    out = vb.mpremote("resume", "exec", "import machine\nprint(machine.reset_cause())").stdout
    assert out.strip() == "3"  # WDT_RESET


def test_deploy_puts_lib_qcd_on_the_board_as_mpy_and_it_imports(vb):
    r = vb.qcdboard("deploy", "--port", vb.tty)
    assert r.returncode == 0, r.stdout + r.stderr
    # It asked the board first: the WebAssembly port loads .mpy v6.3, no native arch.
    assert "board loads .mpy v6.3 (none)" in r.stdout
    for name in os.listdir(os.path.join(ROOT, "lib", "qcd")):
        if name.endswith(".py"):
            on_board = os.path.join(vb.fs, "lib", "qcd", name[:-3] + ".mpy")
            assert not os.path.exists(os.path.join(vb.fs, "lib", "qcd", name)), name  # .mpy only
            with open(on_board, "rb") as b:
                assert b.read(2) == b"M\x06", name  # an .mpy of version 6
    assert not os.path.exists(os.path.join(vb.fs, "lib", "qcd", "__pycache__"))
    out = vb.exec(
        "import qcd.hook\n"
        "class Keys:\n"
        "    def secrets(self):\n"
        "        return [b'k' * 32]\n"
        "    def child_count(self):\n"
        "        return 0\n"
        "    def children(self):\n"
        "        return []\n"
        "h = qcd.hook.QcdHook(keys=Keys())\n"
        "print(h.status()['role'], h.status()['secrets'] != [], qcd.__file__)"
    )
    assert out.strip() == "maker+taker True /lib/qcd/__init__.mpy"
    # The IKE engine deployed beside it imports there too.
    assert vb.exec("import ike.engine, ike.config\nprint(ike.engine.Engine.__name__)").strip() == "Engine"
    # A second deploy finds every file up to date (mpremote compares sha256:
    # mpy-cross output is the same for the same source).
    r = vb.qcdboard("deploy", "--port", vb.tty)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("Up to date:") == len([d for _, d in package_files() if d not in MPY_LEAVE_OFF]), r.stdout


def test_deploy_py_puts_the_sources_and_removes_the_mpy(vb):
    assert vb.qcdboard("deploy", "--port", vb.tty, "--packages", "qcd").returncode == 0
    r = vb.qcdboard("deploy", "--port", vb.tty, "--packages", "qcd", "--py")
    assert r.returncode == 0, r.stdout + r.stderr
    for host, dev in package_files(("qcd",)):
        with open(host, "rb") as a, open(os.path.join(vb.fs, *dev.split("/")), "rb") as b:
            assert a.read() == b.read(), dev
        assert not os.path.exists(os.path.join(vb.fs, *dev[:-3].split("/")) + ".mpy"), dev
    assert vb.exec("import qcd.wire\nprint(qcd.wire.__file__)").strip() == "/lib/qcd/wire.py"
    # and back: the .py go, so they cannot hide the new .mpy
    assert vb.qcdboard("deploy", "--port", vb.tty, "--packages", "qcd").returncode == 0
    assert not os.path.exists(os.path.join(vb.fs, "lib", "qcd", "wire.py"))
    assert vb.exec("import qcd.wire\nprint(qcd.wire.__file__)").strip() == "/lib/qcd/wire.mpy"


# mip (qcdboard deploy --mip): host_tests/test_vboard_stock.py installs
# package.json on a board with stock firmware's frozen modules only.


def test_raw_paste_is_declined_and_plain_raw_mode_carries_long_code(vb):
    # mpremote asks for raw-paste mode; the board answers R\x00 and mpremote
    # sends in plain raw mode. A long program must arrive whole.
    code = "\n".join("v%d = %d" % (i, i) for i in range(400)) + "\nprint(sum(globals()['v%d' % i] for i in range(400)))"
    assert vb.exec(code).strip() == str(sum(range(400)))


def test_board_refuses_a_damaged_partition_table(tmp_path):
    b = VBoard(tmp_path)
    b.start()
    try:
        assert b.exec("print(1)").strip() == "1"
    finally:
        b.stop()
    with open(b.flash, "r+b") as f:
        f.seek(0x8000 + 0x45)  # phy_init's offset, 0xf000 -> 0xf100
        f.write(b"\xf1")
    b.start()
    try:
        r = b.mpremote("exec", "import esp32\nprint(esp32.Partition.find(1))")
        assert r.stdout.strip() == "[]"
    finally:
        b.stop()


def test_vboard_needs_its_tools(tmp_path):
    r = subprocess.run(["node", os.path.join(WASM_DIR, "vboard.mjs"), "--image", str(tmp_path / "none.bin"), "--fs", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "cannot open the flash image" in r.stderr


def test_encrypted_partition_is_the_flash_emulator(vb):
    # The `qcd` partition (flagged encrypted) is host/qcdhost/emu/flash.py over the
    # board's image: a program that would set a bit is refused loudly, and
    # erases are counted in the sidecar beside the image.
    out = vb.exec(
        "import esp32\n"
        "p = esp32.Partition.find(esp32.Partition.TYPE_DATA, label='qcd')[0]\n"
        "p.ioctl(6, 2)\n"
        "p.writeblocks(2, b'\\x0f' * 16, 0)\n"
        "try:\n"
        "    p.writeblocks(2, b'\\xf1' * 16, 0)\n"
        "except Exception as e:\n"
        "    print(type(e).__name__)\n"
    )
    assert out.strip() == "FlashViolation"
    import json

    with open(vb.flash + ".qcd.emu.json") as f:
        meta = json.load(f)
    assert meta["erases"][2] >= 1 and meta["encrypted"] is False

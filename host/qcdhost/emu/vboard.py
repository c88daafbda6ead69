"""qcd virtual board: the MicroPython WebAssembly port on a pseudo-terminal,
with an ESP32's flash (a whole-flash image file) and a filesystem directory,
so `mpremote connect <pty>` and the qcd tools work against it as against a
board.

  vboard [--dir DIR] [--board QCD_ESP32] [--link PATH] [--heap BYTES]
               [--flash-encryption] [--net [--yield-kb N] [--gc-log]]
               [--headless] [--stock] [--app CONFIG [--run readings]]

DIR (default build/vboard) holds the board's state:
  DIR/flash.bin   whole-flash image; made on first use from the board's
                  partition table (`qcdboard image`), kept after that
  DIR/fs/         the board's filesystem (what mpremote cp puts there)
It prints the terminal's path (and makes PATH, default DIR/tty, a link to
it), then runs until interrupted. Killing it and starting it again on the
same DIR is a power cycle: same flash, same files.

--net gives the board UDP sockets on the host's network stack (socket,
select.poll; and the esp32 firmware's cryptolib and hashlib.sha1, which IKE
needs), so the firmware app's IKE loop runs (vboard.mjs's header says how,
and how its heap is collected: --yield-kb, --gc-log).

--stock: the firmware's frozen modules are those of stock ESP32 firmware
(MicroPython 1.27/1.28): the WebAssembly port's extra frozen micropython-lib
modules (hmac, unittest, logging, ...) are hidden unless installed on the
board's filesystem, so what `make deploy` leaves is tested as a stock board
would run it.

--headless: no terminal. This process becomes the board (same pid: kill -9
is a power cut): it powers on, runs boot.py and main.py with the console on
stdout, and exits 0 when main.py and the asyncio tasks it created have
ended (firmware/readings.py runs the IKE loop as one). For demos and tests:

  vboard --dir DIR --net --headless --app qcd.json

--app CONFIG puts the firmware app on the board before it powers on: the
files `qcdboard deploy --app --config CONFIG` copies (lib/qcd, lib/ike,
firmware/qcdapp.py as /lib/qcdapp.py, firmware/main.py as /main.py, CONFIG
as /qcd.json), written straight into DIR/fs/, the board's filesystem.
With --run readings, main.py runs the example app firmware/readings.py
instead (the IKE loop as an asyncio task, readings through the tunnel).

The board itself is qcdhost/emu/wasm/vboard.mjs (its header says what it
emulates and what not). This launcher owns the pseudo-terminal: it keeps the
terminal's device side open, so mpremote can connect and disconnect as often
as it likes, and puts it in raw mode, so the board's output is never echoed
back to it as input.
"""
import argparse
import os
import pty
import shutil
import signal
import subprocess
import sys
import tty

from qcdhost import need, private
from qcdhost.esp import boards, remote
from qcdhost.paths import CHECKOUT, WASM_DIR

# The WebAssembly port, installed by `npm ci` in WASM_DIR (make node).
WASM_PKG = os.path.join(WASM_DIR, "node_modules", "@micropython", "micropython-webassembly-pyscript")
DEFAULT_DIR = os.path.join(CHECKOUT, "build", "vboard") if CHECKOUT else os.path.join("build", "vboard")


def install_app(fsdir, config):
    """What `qcdboard deploy --app --config CONFIG` puts on a board, copied
    into the board's filesystem directory."""
    files = remote.package_files() + list(remote.APP_FILES)
    for host, dev in files:
        dest = os.path.join(fsdir, *dev.split("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(host, dest)
    # The configuration holds the IKE key: 0600, atomically.
    private.copy(config, os.path.join(fsdir, "qcd.json"))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="vboard", description=__doc__.split("\n\n")[0])
    need.version_action(ap, "vboard")
    ap.add_argument("--dir", default=DEFAULT_DIR, help="state directory (default build/vboard)")
    ap.add_argument("--board", default=boards.DEFAULT_BOARD, help="board definition for a new flash image (default %(default)s)")
    ap.add_argument("--link", help="symlink to the terminal (default DIR/tty)")
    ap.add_argument("--heap", type=int, default=2 * 1024 * 1024, help="MicroPython's initial heap in bytes (default 2 MiB; the port grows it on demand)")
    ap.add_argument("--flash-encryption", action="store_true", help="the chip has flash encryption on: a partition flagged `encrypted` that has no emulator sidecar yet gets an encrypted one (a provisioned image's sidecar says for itself)")
    ap.add_argument("--net", action="store_true", help="UDP networking on the host's stack (socket, select; cryptolib, hashlib.sha1)")
    ap.add_argument("--yield-kb", type=int, help="with --net: the running app yields to the top level for a garbage collection after this much allocation (KiB, default 1024)")
    ap.add_argument("--gc-log", action="store_true", help="with --net: one line on stderr per top-level collection (heap before and after) and the running app's heap every 30 s")
    ap.add_argument("--stock", action="store_true", help="only the frozen modules stock ESP32 firmware has (asyncio, mip, ...): this port's extra frozen micropython-lib modules (hmac, unittest, logging, ...) import only when installed on the board's filesystem")
    ap.add_argument("--headless", action="store_true", help="no terminal: become the board process, console on stdout, exit when main.py ends")
    ap.add_argument("--app", metavar="CONFIG", help="first copy the firmware app, lib/qcd, lib/ike and CONFIG (as /qcd.json) into the board's filesystem")
    ap.add_argument("--run", choices=("qcdapp", "readings"), default="qcdapp", help="with --app: what main.py runs, the app (firmware/main.py) or the example app firmware/readings.py (the IKE loop as an asyncio task)")
    ap.add_argument("--cut-file", metavar="PATH", help="with --net: when PATH appears, the flash emulator tears its next write (a power cut mid-write: the board exits 137)")
    a = ap.parse_args(argv)
    if (a.yield_kb is not None or a.gc_log or a.cut_file) and not a.net:
        ap.error("--yield-kb, --gc-log and --cut-file go with --net")

    # The board's flash image is made with esptool from the partition table
    # (ESP-IDF's format); the board itself is Node.js with the port.
    need.modules("vboard", ["esp_idf_defs", "esptool"])
    node = need.program("vboard", "node", "install Node.js 20")
    if not os.path.isdir(WASM_PKG):
        need.fail("vboard", "the MicroPython WebAssembly port is not installed: run `npm ci` in %s (make node)" % WASM_DIR)
    from qcdhost.esp import image
    os.makedirs(a.dir, exist_ok=True)
    flash = os.path.join(a.dir, "flash.bin")
    if not os.path.exists(flash):
        try:
            image.build(boards.get(a.board), flash)
        except (ValueError, OSError) as e:
            sys.exit("vboard: cannot make %s: %s" % (flash, e))
        print("vboard: new flash image %s (%s)" % (flash, a.board), file=sys.stderr)
    fsdir = os.path.join(a.dir, "fs")
    if a.app:
        try:
            install_app(fsdir, a.app)
            if a.run == "readings":
                with open(os.path.join(fsdir, "main.py"), "w") as f:
                    f.write("# vboard --run readings\nimport readings\n\nreadings.run()\n")
        except OSError as e:
            sys.exit("vboard: cannot install the app: %s" % e)
    board = [node, os.path.join(WASM_DIR, "vboard.mjs"), "--image", flash, "--fs", fsdir, "--heap", str(a.heap)]
    if a.flash_encryption:
        board.append("--flash-encryption")
    if a.net:
        board.append("--net")
        if a.yield_kb is not None:
            board += ["--yield-kb", str(a.yield_kb)]
        if a.gc_log:
            board.append("--gc-log")
        if a.cut_file:
            board += ["--cut-file", os.path.abspath(a.cut_file)]
    if a.stock:
        board.append("--stock")
    if a.headless:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(node, board + ["--headless"])

    master, slave = pty.openpty()
    tty.setraw(slave)
    name = os.ttyname(slave)
    link = a.link or os.path.join(a.dir, "tty")
    try:
        os.unlink(link)
    except FileNotFoundError:
        pass
    os.symlink(name, link)

    # The board reads the master side while its Python runs too (Ctrl-C for
    # a running program, vboard.mjs), so it must never block there.
    os.set_blocking(master, False)
    cmd = board + ["--fd", str(master)]
    # The board gets the terminal's master side; this process keeps the slave.
    child = subprocess.Popen(cmd, pass_fds=(master,))
    os.close(master)
    print("vboard: %s (link %s), pid %d" % (name, link, os.getpid()), flush=True)

    def stop(signum, frame):
        child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        rc = child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        try:
            if os.readlink(link) == name:
                os.unlink(link)
        except OSError:
            pass
        os.close(slave)
    return rc if rc and rc > 0 else 0


if __name__ == "__main__":
    sys.exit(main())

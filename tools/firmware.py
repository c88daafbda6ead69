#!/usr/bin/env python3
"""Build MicroPython firmware for a qcd board: `make firmware`.

  python tools/firmware.py [--board QCD_ESP32] [--dry-run]

Needs, from the environment:
  MICROPY_DIR  a MicroPython checkout (v1.27.0 or v1.28.0) with its
               micropython-lib submodule (make -C $MICROPY_DIR/ports/esp32 submodules)
  IDF_PATH     ESP-IDF (v5.5.x for those MicroPython versions), with its
               environment exported (. $IDF_PATH/export.sh: idf.py on PATH)
Builds ports/esp32 with BOARD_DIR=boards/<board> (which freezes lib/ikebase,
lib/qcd and lib/ike through firmware/manifest.py) into build/firmware-<board>/,
then prints the flash command. Without what it needs, it says exactly what
is missing and exits 2, building nothing.
"""
import argparse
import os
import shutil
import subprocess
import sys

from qcdhost.esp import boards
from qcdhost.paths import CHECKOUT as ROOT

# Files of a MicroPython checkout the qcd boards rely on (v1.27.0/v1.28.0).
MICROPY_NEEDS = (
    "ports/esp32/Makefile",
    "ports/esp32/CMakeLists.txt",
    "ports/esp32/boards/manifest.py",
    "ports/esp32/boards/sdkconfig.base",
    "ports/esp32/boards/sdkconfig.ble",
    # the port's manifest requires micropython-lib packages (mip, ...)
    "lib/micropython-lib/micropython/mip/manifest.py",
)
BOARD_NEEDS = {
    "QCD_ESP32_S3": ("ports/esp32/boards/sdkconfig.spiram_sx",),
    "QCD_ESP32_C3": ("ports/esp32/boards/sdkconfig.riscv",),
}


def missing(board, env):
    """What is missing to build `board`: a list of sentences."""
    out = []
    mp = env.get("MICROPY_DIR")
    if not mp:
        out.append("MICROPY_DIR is not set: point it at a MicroPython checkout (git clone -b v1.28.0 https://github.com/micropython/micropython)")
    elif not os.path.isdir(mp):
        out.append("MICROPY_DIR=%s is not a directory" % mp)
    else:
        for rel in MICROPY_NEEDS + BOARD_NEEDS.get(board.name, ()):
            if not os.path.exists(os.path.join(mp, rel)):
                if rel.startswith("lib/micropython-lib"):
                    out.append("%s has no micropython-lib submodule (%s): run `make -C %s/ports/esp32 submodules BOARD=ESP32_GENERIC`" % (mp, rel, mp))
                else:
                    out.append("%s has no %s: not a MicroPython v1.27/v1.28 checkout" % (mp, rel))
    idf = env.get("IDF_PATH")
    if not idf:
        out.append("IDF_PATH is not set: install ESP-IDF v5.5.x and run `. $IDF_PATH/export.sh`")
    elif not os.path.isfile(os.path.join(idf, "tools", "idf.py")):
        out.append("IDF_PATH=%s has no tools/idf.py: not an ESP-IDF tree" % idf)
    if shutil.which("idf.py", path=env.get("PATH")) is None:
        out.append("idf.py is not on PATH: run `. $IDF_PATH/export.sh` first")
    return out


def make_command(board, env):
    build = os.path.join(ROOT, "build", "firmware-%s" % board.name)
    return ["make", "-C", os.path.join(env["MICROPY_DIR"], "ports", "esp32"), "BOARD_DIR=%s" % board.dir, "BUILD=%s" % build], build


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--board", default=boards.DEFAULT_BOARD)
    ap.add_argument("--dry-run", action="store_true", help="check and print the build command only")
    a = ap.parse_args(argv)
    try:
        board = boards.get(a.board)
    except ValueError as e:
        print("firmware: %s" % e, file=sys.stderr)
        return 2
    gaps = missing(board, os.environ)
    if gaps:
        print("firmware: cannot build %s:" % board.name, file=sys.stderr)
        for g in gaps:
            print("  - " + g, file=sys.stderr)
        print("then: make firmware BOARD=%s MICROPY_DIR=/path/to/micropython" % board.name, file=sys.stderr)
        return 2
    cmd, build = make_command(board, os.environ)
    print(" ".join(cmd))
    if a.dry_run:
        return 0
    r = subprocess.run(cmd)
    if r.returncode:
        return 1
    print("built %s; flash it with:\n  make flash PORT=/dev/ttyUSB0 BOARD=%s FIRMWARE=%s" % (build, board.name, os.path.relpath(build, ROOT)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

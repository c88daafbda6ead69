# esptool command lines for the qcd boards: write the partition table and a
# firmware image, read the `qcd` partition back, assemble a whole-flash image.
#
# The lists built here are esptool's own argv (esptool v5 spelling:
# write-flash, read-flash, merge-bin). `parse` runs them through esptool's
# click parser without connecting to anything, so the tests (and --dry-run)
# check every command line against the esptool that is installed; `run`
# executes them. merge-bin takes the same ADDRESS FILE pairs as write-flash,
# so it shows, byte for byte, what write-flash puts in the flash.
import os
import subprocess
import sys

from qcdhost.esp.boards import PARTITION_TABLE_OFFSET

DEFAULT_BAUD = 460800
IMAGE_MAGIC = 0xE9  # first byte of an ESP image (bootloader and app)


def _pairs(parts):
    out = []
    for addr, path in parts:
        out += ["0x%x" % addr, path]
    return out


def write_flash(board, port, parts, baud=DEFAULT_BAUD, erase_all=False):
    """esptool argv writing [(address, file), ...] to the board on `port`."""
    args = ["--chip", board.chip, "--port", port, "--baud", str(baud), "write-flash"]
    if erase_all:
        args.append("--erase-all")
    args += ["--flash-size", board.esptool_flash_size()]
    return args + _pairs(parts)


def read_flash(board, port, address, size, out, baud=DEFAULT_BAUD):
    """esptool argv reading `size` bytes at `address` into file `out`."""
    return ["--chip", board.chip, "--port", port, "--baud", str(baud), "read-flash", "0x%x" % address, "0x%x" % size, out]


def merge_bin(board, parts, out):
    """esptool argv assembling [(address, file), ...] into one whole-flash
    image of the board's flash size, 0xFF where nothing is written (an erased
    chip)."""
    return ["--chip", board.chip, "merge-bin", "--output", out, "--format", "raw", "--pad-to-size", board.esptool_flash_size()] + _pairs(parts)


def parse(args):
    """Parse esptool argv with esptool's own command-line parser, without
    running it: (command name, its parameters). Raises click's UsageError or
    BadParameter (with esptool's message) when esptool would refuse it."""
    import esptool

    group = esptool.cli
    group._esp = None  # what EsptoolGroup.__call__ sets before parsing
    ctx = group.make_context("esptool", list(args))
    rest = list(getattr(ctx, "_protected_args", [])) + list(ctx.args)
    name, cmd, rest = group.resolve_command(ctx, rest)
    sub = cmd.make_context(name, rest, parent=ctx)
    params = dict(sub.params)
    for v in params.get("addr_filename") or ():
        v[1].close()  # click opened each FILE to check it; nothing is read
    params["_group"] = dict(ctx.params)
    return name, params


def run(args, check=True):
    """Run esptool (the one in this Python environment) with argv `args`."""
    cmd = [sys.executable, "-m", "esptool"] + list(args)
    return subprocess.run(cmd, check=check)


def firmware_parts(board, firmware, workdir):
    """The (address, file) pairs of a MicroPython firmware, without its
    partition table (the flash tool writes the board's own at 0x8000).

    `firmware` is either an ESP-IDF build directory (build-QCD_ESP32/, from
    `make firmware`): bootloader/bootloader.bin and micropython.bin; or a
    combined firmware.bin (MicroPython's download or build output), which
    starts at the bootloader offset and holds bootloader, table and app at
    their flash addresses; it is split so the board's table replaces its own,
    the two pieces written into directory `workdir`. Returns the parts."""
    if os.path.isdir(firmware):
        boot = os.path.join(firmware, "bootloader", "bootloader.bin")
        app = os.path.join(firmware, "micropython.bin")
        for p in (boot, app):
            if not os.path.isfile(p):
                raise ValueError("%s is not an ESP-IDF build directory of MicroPython: no %s" % (firmware, os.path.relpath(p, firmware)))
        return [(board.bootloader_offset, boot), (0x10000, app)]
    with open(firmware, "rb") as f:
        data = f.read()
    boot_len = PARTITION_TABLE_OFFSET - board.bootloader_offset
    app_at = 0x10000 - board.bootloader_offset
    if len(data) <= app_at or data[0] != IMAGE_MAGIC or data[app_at] != IMAGE_MAGIC:
        raise ValueError(
            "%s is not a combined MicroPython firmware for %s: want an ESP image (0xE9) at 0 and at 0x%x (the app at 0x10000, bootloader at 0x%x)"
            % (firmware, board.chip, app_at, board.bootloader_offset)
        )
    base = os.path.join(workdir, os.path.basename(firmware))
    boot, app = base + ".bootloader.bin", base + ".app.bin"
    with open(boot, "wb") as f:
        f.write(data[:boot_len])
    with open(app, "wb") as f:
        f.write(data[app_at:])
    return [(board.bootloader_offset, boot), (0x10000, app)]

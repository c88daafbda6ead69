# The board definitions under boards/: which chip each is for and where
# things go in its flash. One place, so the flash, dump and image tools, the
# virtual board and the tests agree.
import os

from qcdhost.paths import BOARDS_DIR

# ESP-IDF's CONFIG_PARTITION_TABLE_OFFSET default, which MicroPython keeps.
PARTITION_TABLE_OFFSET = 0x8000
MIB = 1024 * 1024


class Board:
    def __init__(self, name, chip, bootloader_offset, mpy_arch, flash_size=4 * MIB):
        self.name = name
        self.chip = chip  # esptool --chip
        # Where the second-stage bootloader goes: 0x1000 on the ESP32, 0x0 on
        # the S3 and C3 (MicroPython's board.json "flash_offset").
        self.bootloader_offset = bootloader_offset
        self.mpy_arch = mpy_arch  # mpy-cross -march for this chip
        self.flash_size = flash_size
        self.dir = os.path.join(BOARDS_DIR, name)
        self.csv = os.path.join(self.dir, "partitions-qcd.csv")

    def esptool_flash_size(self):
        return "%dMB" % (self.flash_size // MIB)

    def __repr__(self):
        return "<Board %s (%s)>" % (self.name, self.chip)


BOARDS = {
    b.name: b
    for b in (
        Board("QCD_ESP32", "esp32", 0x1000, "xtensawin"),
        Board("QCD_ESP32_S3", "esp32s3", 0x0, "xtensawin"),
        Board("QCD_ESP32_C3", "esp32c3", 0x0, "rv32imc"),
    )
}
DEFAULT_BOARD = "QCD_ESP32"


def get(name):
    """The board called `name` (a boards/ directory name), or ValueError."""
    b = BOARDS.get(name or DEFAULT_BOARD)
    if b is None:
        raise ValueError("unknown board %r: one of %s" % (name, ", ".join(sorted(BOARDS))))
    return b

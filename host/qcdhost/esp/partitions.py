# Partition tables of the qcd boards: parse the CSV, check it, make the binary.
#
# Parsing, verifying and the binary form come from esp-idf-defs (PyPI), which
# packages ESP-IDF's own gen_esp32part.py code (partition_table component):
# the same parser and binary writer the firmware build runs, so the binary
# the flash tool writes is byte for byte the one `idf.py build` makes
# (32-byte entries, then the 0xEBEB MD5 entry, 0xFF padding to 0xC00 bytes).
# The checks below add what ESP-IDF does not know: MicroPython's automatic
# `vfs` partition and what the QCD store needs.
from esp_idf_defs.partitions import (
    APP_TYPE,
    DATA_TYPE,
    InputError,
    PartitionTable,
)

from qcdhost.esp.boards import PARTITION_TABLE_OFFSET

SECTOR = 4096  # NOR erase unit, and the store's block size
QCD_LABEL = "qcd"
# The store takes 4..255 blocks of 4 KiB (docs/FORMAT.md: MIN_BLOCKS and
# MAX_BLOCKS of lib/qcd/store.py; a test keeps these equal to them); 64 KiB
# is the reference size of the boards here.
QCD_MIN_SECTORS = 4
QCD_MAX_SECTORS = 255
# MicroPython's stock app partition on 4 MiB boards (partitions-4MiBplus.csv,
# v1.27.0 and v1.28.0): the size its own builds are checked against by
# ESP-IDF's check_sizes.py. Ours must not be smaller.
STOCK_FACTORY_SIZE = 0x1F0000
# Keep at least this much for MicroPython's filesystem (where deploy puts
# lib/qcd when it is not frozen, and the config file).
MIN_VFS = 1024 * 1024


def load(path):
    """The partition table in CSV file `path` (ESP-IDF's parser)."""
    with open(path) as f:
        text = f.read()
    t = PartitionTable.from_csv(text, PARTITION_TABLE_OFFSET)
    t.verify(PARTITION_TABLE_OFFSET)
    return t


def from_binary(data):
    """Parse a binary table (checks its MD5 entry); InputError if damaged."""
    return PartitionTable.from_binary(bytes(data))


def to_binary(table):
    """The binary table as ESP-IDF writes it: 0xC00 bytes, MD5 entry included."""
    return table.to_binary()


def vfs_region(table, flash_size):
    """(offset, size) of the `vfs` partition MicroPython registers at boot.

    ports/esp32/main.c: if no DATA partition is labelled "vfs" or "ffat", it
    registers "vfs" from the end of the highest partition to the end of the
    physical flash. With one, that partition is the filesystem.
    """
    for p in table:
        if p.type == DATA_TYPE and p.name in ("vfs", "ffat"):
            return p.offset, p.size
    end = max(p.offset + p.size for p in table)
    return end, max(0, flash_size - end)


def find(table, label, ptype=None):
    for p in table:
        if p.name == label and (ptype is None or p.type == ptype):
            return p
    return None


def problems(table, flash_size):
    """What is wrong with `table` for a qcd board of `flash_size` bytes: a
    list of sentences, empty when it is fine."""
    out = []
    try:
        table.verify(PARTITION_TABLE_OFFSET)
    except InputError as e:
        out.append("ESP-IDF rejects the table: %s" % e)
    try:
        table.verify_size_fits(flash_size)
    except InputError as e:
        out.append(str(e))
    for p in table:
        align = 0x10000 if p.type == APP_TYPE else SECTOR
        if p.offset % align or p.size % SECTOR:
            out.append("%s: offset 0x%x / size 0x%x not aligned (0x%x / 0x%x)" % (p.name, p.offset, p.size, align, SECTOR))
    q = find(table, QCD_LABEL)
    if q is None:
        out.append("no partition labelled %r" % QCD_LABEL)
    else:
        if q.type != DATA_TYPE:
            out.append("%s: type %d, want data (1): esp32.Partition.find(TYPE_DATA, label=...) would not see it" % (q.name, q.type))
        if not q.encrypted:
            out.append("%s: not flagged `encrypted`" % q.name)
        if q.size % SECTOR or not QCD_MIN_SECTORS <= q.size // SECTOR <= QCD_MAX_SECTORS:
            out.append("%s: size 0x%x, want %d..%d sectors of 4 KiB" % (q.name, q.size, QCD_MIN_SECTORS, QCD_MAX_SECTORS))
    factory = [p for p in table if p.type == APP_TYPE]
    if not factory:
        out.append("no app partition")
    elif min(p.size for p in factory) < STOCK_FACTORY_SIZE:
        out.append("app partition 0x%x smaller than MicroPython's stock 0x%x" % (min(p.size for p in factory), STOCK_FACTORY_SIZE))
    off, size = vfs_region(table, flash_size)
    if size < MIN_VFS:
        out.append("MicroPython's vfs would get %d bytes at 0x%x (the highest partition ends there); keep `qcd` below the end of flash" % (size, off))
    return out


def describe(table, flash_size):
    """The table as text, with the vfs region MicroPython adds."""
    lines = ["# %-10s %-5s %-8s %-10s %-10s %s" % ("name", "type", "subtype", "offset", "size", "flags")]
    for p in sorted(table, key=lambda p: p.offset):
        lines.append(
            "  %-10s %-5s 0x%-6x 0x%-8x 0x%-8x %s"
            % (p.name, "app" if p.type == APP_TYPE else "data" if p.type == DATA_TYPE else p.type, p.subtype, p.offset, p.size, "encrypted" if p.encrypted else "")
        )
    if find(table, "vfs") is None and find(table, "ffat") is None:
        off, size = vfs_region(table, flash_size)
        lines.append("  %-10s %-5s 0x%-6x 0x%-8x 0x%-8x %s" % ("(vfs)", "data", 0x81, off, size, "registered by MicroPython at boot"))
    return "\n".join(lines)

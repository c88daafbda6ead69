# Whole-flash images: what a board's flash holds after `qcdboard flash`,
# made on the host with esptool merge-bin (the same ADDRESS FILE pairs that
# write-flash takes, 0xFF everywhere else, as on an erased chip). The virtual
# board boots from one; `qcdboard dump --image` reads the `qcd` partition
# out of one exactly as esptool read-flash reads it out of a board.
import os
import tempfile

from board import esptool_cmd, partitions
from board.boards import PARTITION_TABLE_OFFSET


def build(board, out, extra=()):
    """Write a whole-flash image for `board` to `out`: its partition table at
    0x8000 plus `extra` (address, file) pairs, e.g. a provisioned `qcd`
    partition image at the partition's address."""
    table = partitions.load(board.csv)
    bad = partitions.problems(table, board.flash_size)
    if bad:
        raise ValueError("%s: %s" % (board.csv, "; ".join(bad)))
    with tempfile.TemporaryDirectory() as tmp:
        pt = os.path.join(tmp, "partition-table.bin")
        with open(pt, "wb") as f:
            f.write(partitions.to_binary(table))
        args = esptool_cmd.merge_bin(board, [(PARTITION_TABLE_OFFSET, pt)] + list(extra), out)
        esptool_cmd.run(["--silent"] + args)
    return out


def table_of(image_path):
    """The partition table a whole-flash image carries at 0x8000."""
    with open(image_path, "rb") as f:
        f.seek(PARTITION_TABLE_OFFSET)
        raw = f.read(0xC00)
    return partitions.from_binary(raw)


def read_partition(image_path, label):
    """The bytes of partition `label` in a whole-flash image: (partition, data)."""
    p = partitions.find(table_of(image_path), label)
    if p is None:
        raise ValueError("%s has no partition labelled %r" % (image_path, label))
    with open(image_path, "rb") as f:
        f.seek(p.offset)
        data = f.read(p.size)
    if len(data) != p.size:
        raise ValueError("%s ends inside partition %r" % (image_path, label))
    return p, data

# Whole-flash images: what a board's flash holds after `qcdboard flash`,
# made on the host with esptool merge-bin (the same ADDRESS FILE pairs that
# write-flash takes, 0xFF everywhere else, as on an erased chip). The virtual
# board boots from one; `qcdboard dump --image` reads the `qcd` partition
# out of one exactly as esptool read-flash reads it out of a board.
import os
import tempfile

from qcdhost import private
from qcdhost.esp import esptool_cmd, partitions
from qcdhost.esp.boards import PARTITION_TABLE_OFFSET


def build(board, out, extra=()):
    """Write a whole-flash image for `board` to `out`: its partition table at
    0x8000 plus `extra` (address, file) pairs, e.g. a provisioned `qcd`
    partition image at the partition's address. The image (it carries the
    qcd partition, secret included) is created 0600, atomically: esptool
    writes it in a private temporary directory, this puts it in place."""
    table = partitions.load(board.csv)
    bad = partitions.problems(table, board.flash_size)
    if bad:
        raise ValueError("%s: %s" % (board.csv, "; ".join(bad)))
    with tempfile.TemporaryDirectory() as tmp:
        pt = os.path.join(tmp, "partition-table.bin")
        with open(pt, "wb") as f:
            f.write(partitions.to_binary(table))
        merged = os.path.join(tmp, "flash.bin")
        args = esptool_cmd.merge_bin(board, [(PARTITION_TABLE_OFFSET, pt)] + list(extra), merged)
        esptool_cmd.run(["--silent"] + args)
        private.copy(merged, out)
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


# qcdhost.emu.flash keeps what a flash chip holds outside the partition's
# bytes (the device key of flash encryption, erase counts) in a sidecar
# IMAGE.emu.json beside a partition image; the virtual board keeps one per
# partition beside its whole-flash image: FLASH.<label>.emu.json.
META_SUFFIX = ".emu.json"


def sidecar_of(flash_image, label):
    return "%s.%s%s" % (flash_image, label, META_SUFFIX)


def copy_sidecar(src_image_or_sidecar, dest):
    """Copy the sidecar of partition image `src` (src.emu.json, or `src`
    itself if it is one) to `dest` (a sidecar path, or an image whose
    sidecar it becomes), 0600 (it holds an encrypted image's device key).
    Nothing to copy: nothing done."""
    src = src_image_or_sidecar
    if not src.endswith(META_SUFFIX):
        src += META_SUFFIX
    if not dest.endswith(META_SUFFIX):
        dest += META_SUFFIX
    if os.path.exists(src):
        private.copy(src, dest)
        return True
    return False

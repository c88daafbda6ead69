# The `esp32` module of the qcd virtual board (vboard): MicroPython's
# esp32.Partition over the board's whole-flash image file, with the behaviour
# of ports/esp32/esp32_partition.c (v1.27/v1.28) and the checks of ESP-IDF's
# esp_partition (partition_target.c). The flash itself and its partition
# table (read from the image at 0x8000, as the bootloader and esp_partition
# do) live in qcdhost/emu/wasm/vboard.mjs, reached through `_vboard`.
#
# A partition flagged `encrypted` (the `qcd` store), opened with the default
# 4096-byte blocks, is the flash emulator, qcdhost/emu/flash.py (imported here
# as _flashemu): NOR rules enforced loudly, flash encryption as its sidecar
# file says (IMAGE.<label>.emu.json beside the board's image, as qcdtool
# provision writes it for a partition image), erase counts. Its backing is
# the partition's bytes in the board's image. Other partitions follow NOR
# rules in vboard.mjs (a program ANDs bits in, as the chip does).
#
# Not here (no virtual board needs them): NVS, wake_*, RMT, ULP,
# raw_temperature, idf_heap_info, and OTA (set_boot, get_next_update).
import json

import _vboard
from binascii import hexlify, unhexlify

try:
    import _flashemu
except ImportError:
    _flashemu = None

HEAP_DATA = 4
HEAP_EXEC = 1

# ports/esp32/mphalport.c check_esp_err: OSError(-code, "NAME"), codes from
# ESP-IDF's esp_err.h.
_ERR = {
    -0x102: "ESP_ERR_INVALID_ARG",
    -0x104: "ESP_ERR_INVALID_SIZE",
    -0x10D: "ESP_ERR_NOT_ALLOWED",
    -0x105: "ESP_ERR_NOT_FOUND",
}


def _check(rc):
    if rc:
        raise OSError(rc, _ERR.get(rc, "ESP_FAIL"))


def _table():
    # [(index, type, subtype, address, size, label, encrypted), ...] in
    # esp_partition_find order: the table's order, then the `vfs` partition
    # MicroPython registers at boot.
    out = []
    for line in _vboard.partitions().split("\n"):
        if line:
            f = line.split(",")
            out.append((int(f[0]), int(f[1]), int(f[2]), int(f[3]), int(f[4]), f[5], f[6] == "1"))
    return out


class _Backing:
    # qcdhost/emu/flash.py's backing interface over the board's image.
    def __init__(self, index, size):
        self._i = index
        self.size = size

    def read(self, off, n):
        return unhexlify(_vboard.raw_read(self._i, off, n))

    def write(self, off, data):
        _vboard.raw_write(self._i, off, hexlify(data).decode())

    def flush(self):
        pass

    def load_meta(self):
        s = _vboard.meta_load(self._i)
        return json.loads(s) if s else None

    def save_meta(self, meta):
        _vboard.meta_save(self._i, json.dumps(meta))


_emus = {}  # partition index -> its FlashEmu, one per boot (as one chip)


def _arm_cut():
    # vboard.mjs --cut-file: tear the next program/erase of any emulated
    # partition; flashemu then raises PowerCut, which ends the board.
    for fe in _emus.values():
        fe.cut_at = fe.ops + 1
        print("vboard: power cut armed: flash operation %d will be torn" % fe.cut_at)


def _emu(e):
    i = e[0]
    if i not in _emus:
        from os import urandom

        # A new sidecar records whether this chip encrypts the partition.
        enc = _vboard.flash_encryption() == 1
        _emus[i] = _flashemu.FlashEmu(_Backing(i, e[4]), encrypted=enc, key=urandom(32) if enc else None)
    return _emus[i]


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    def __init__(self, id, block_size=4096):
        if isinstance(id, tuple):  # an entry of _table(), from find()
            self._init(id, block_size)
            return
        if isinstance(id, int):
            # No OTA data on the virtual board: BOOT and RUNNING are the
            # first app partition, as on a board with one factory app.
            if id not in (0, 1):
                raise ValueError
            p = [e for e in _table() if e[1] == 0][:1]
        else:
            t = _table()
            p = [e for e in t if e[1] == 0 and e[5] == id][:1] or [e for e in t if e[1] == 1 and e[5] == id][:1]
        if not p:
            raise OSError(2)  # MP_ENOENT
        self._init(p[0], block_size)

    def _init(self, e, block_size):
        self._i, self._type, self._subtype, self._addr, self._size, self._label, self._enc = e
        self._bs = block_size & 0xFFFF  # stored as uint16_t
        self._fe = _emu(e) if self._enc and self._bs == 4096 and _flashemu is not None else None

    @staticmethod
    def find(type=0, subtype=0xFF, label=None, block_size=4096):
        out = []
        for e in _table():
            if e[1] == type and (subtype == 0xFF or e[2] == subtype) and (label is None or e[5] == label):
                out.append(Partition(e, block_size))
        return out

    def info(self):
        return (self._type, self._subtype, self._addr, self._size, self._label, self._enc)

    def __repr__(self):
        return "<Partition type=%u, subtype=%u, address=%u, size=%u, label=%s, encrypted=%u>" % (
            self._type, self._subtype, self._addr, self._size, self._label, self._enc)

    def readblocks(self, block_num, buf, offset=0):
        if self._fe is not None:
            return self._fe.readblocks(block_num, buf, offset)
        n = len(buf)
        r = _vboard.read(self._i, block_num * self._bs + offset, n)
        if isinstance(r, int):
            _check(r)
        mv = memoryview(buf)
        mv[0:n] = unhexlify(r)

    def writeblocks(self, block_num, buf, offset=None):
        if self._fe is not None:
            return self._fe.writeblocks(block_num, buf, offset)
        addr = block_num * self._bs
        n = len(buf)
        if offset is None:
            # A simple write erases first (esp32_partition.c).
            if self._bs >= 4096:
                _check(_vboard.erase(self._i, addr, n))
            else:
                top = addr + n
                a = (addr // 4096) * 4096
                o = addr % 4096
                while a < top:
                    cache = bytearray(4096)
                    if o > 0 or top < a + 4096:
                        self._raw_read(a, cache)
                    _check(_vboard.erase(self._i, a, 4096))
                    if o > 0:
                        _check(_vboard.write(self._i, a, hexlify(cache[:o]).decode()))
                    if top < a + 4096:
                        _check(_vboard.write(self._i, top, hexlify(cache[top - a:]).decode()))
                    o = 0
                    a += 4096
        else:
            addr += offset
        _check(_vboard.write(self._i, addr, hexlify(buf).decode()))

    def _raw_read(self, addr, buf):
        r = _vboard.read(self._i, addr, len(buf))
        if isinstance(r, int):
            _check(r)
        buf[:] = unhexlify(r)

    def ioctl(self, op, arg):
        if self._fe is not None:
            return self._fe.ioctl(op, arg)
        if op in (1, 2, 3):  # INIT, DEINIT, SYNC
            return 0
        if op == 4:  # BLOCK_COUNT
            return self._size // self._bs
        if op == 5:  # BLOCK_SIZE
            return self._bs
        if op == 6:  # BLOCK_ERASE
            if self._bs != 4096:
                return -22  # -MP_EINVAL, returned, not raised
            _check(_vboard.erase(self._i, arg * 4096, 4096))
            return 0
        return None

    def set_boot(self):
        raise OSError(-0x105, "ESP_ERR_NOT_FOUND")  # no OTA on the virtual board

    def get_next_update(self):
        raise OSError(2)

    @staticmethod
    def mark_app_valid_cancel_rollback():
        raise OSError(-0x105, "ESP_ERR_NOT_FOUND")


def idf_heap_info(capabilities):
    return []

# esp32 stand-in for the heap bench (bench/heap_bisect.py) on MicroPython's
# unix port: esp32.Partition over an image file, so the firmware app mounts
# its store as on a board while the partition's bytes stay out of the heap
# being measured (on a board they are in flash). Copied to the probe's /lib
# as esp32.py; it is compiled to .mpy in every variant, so its own cost is
# the same in each (a few hundred bytes, reported with the figures).
#
# The image path comes from the environment (QCD_BENCH_IMAGE). NOR rules are
# kept as far as the store can see them: an erase writes 0xFF, a program ANDs
# the new bytes into the old ones. Reads and programs go 256 bytes at a time,
# so no buffer of a block's size is made here.
import os

_BLOCK = 4096
_CHUNK = 256


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    def __init__(self, label, block_size=_BLOCK):
        self.label = label
        self.f = open(os.getenv("QCD_BENCH_IMAGE"), "r+b")
        self.f.seek(0, 2)
        self.size = self.f.tell()

    @staticmethod
    def find(type=0, subtype=0xFF, label=None, block_size=_BLOCK):
        if type != 1 or label != "qcd":
            return []
        return [Partition(label)]

    def info(self):
        return (1, 0x40, 0x210000, self.size, self.label, False)

    def readblocks(self, n, buf, off=0):
        self.f.seek(n * _BLOCK + off)
        self.f.readinto(buf)

    def _erase(self, blk):
        ff = b"\xff" * _CHUNK
        self.f.seek(blk * _BLOCK)
        for _ in range(_BLOCK // _CHUNK):
            self.f.write(ff)

    def writeblocks(self, n, buf, off=None):
        if off is None:
            for b in range(n, n + len(buf) // _BLOCK):
                self._erase(b)
            off = 0
        addr = n * _BLOCK + off
        mv = memoryview(buf)
        old = bytearray(_CHUNK)
        for i in range(0, len(buf), _CHUNK):
            part = mv[i : i + _CHUNK]
            k = len(part)
            self.f.seek(addr + i)
            self.f.readinto(old)
            for j in range(k):
                old[j] &= part[j]
            self.f.seek(addr + i)
            self.f.write(memoryview(old)[:k])
        self.f.flush()

    def ioctl(self, op, arg):
        if op in (1, 2, 3):
            return 0
        if op == 4:
            return self.size // _BLOCK
        if op == 5:
            return _BLOCK
        if op == 6:
            self._erase(arg)
            self.f.flush()
            return 0
        return None

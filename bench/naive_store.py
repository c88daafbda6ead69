# The baseline the qcd store is measured against: the obvious design, a table
# of fixed slots, where each update rewrites in place the one block that holds
# the slot (read it, change the slot, erase it, write it back: MicroPython's
# simple `writeblocks(n, buf)`). Portable (CPython and MicroPython), so its
# RAM can be measured on the WebAssembly port like the real store's.
#
# It is correct between power cuts and nothing more: a cut between the erase
# and the write loses the whole block (the secret with it, for block 0), and
# every update costs a 4096-byte erase and program of the same block. That is
# what the benchmark shows. Not for use.
#
# Block b: 64 bytes of header (block 0: magic, boot count, secret), then 100
# slots of 40 bytes: used (1), flags (1: initiator, IPv6), reserved (2),
# Child SPI (4), SPI-I (8), SPI-R (8), peer address (16).
import struct

BLOCK = 4096
SLOT = 40
SLOTS_PER_BLOCK = 100
MAGIC = b"NAIV"


class NaiveStore:
    def __init__(self, dev, secret, slots=100, count_boot=True):
        self.dev = dev
        self.blocks = (slots + SLOTS_PER_BLOCK - 1) // SLOTS_PER_BLOCK
        self.nslots = self.blocks * SLOTS_PER_BLOCK
        self.map = {}  # spi -> (slot, entry)
        self.free = []
        buf = bytearray(BLOCK)
        self.dev.readblocks(0, buf)
        if buf[0:4] != MAGIC:
            buf = bytearray(BLOCK)
            buf[0:4] = MAGIC
            buf[8:40] = secret
            self.dev.writeblocks(0, buf)
            for b in range(1, self.blocks):
                self.dev.writeblocks(b, bytearray(BLOCK))
        self._secret = bytes(buf[8:40])
        self.boot_count = struct.unpack_from("<I", buf, 4)[0]
        for b in range(self.blocks):
            if b:
                self.dev.readblocks(b, buf)
            for i in range(SLOTS_PER_BLOCK):
                o = 64 + i * SLOT
                slot = b * SLOTS_PER_BLOCK + i
                if buf[o] == 1:
                    flags = buf[o + 1]
                    ip = bytes(buf[o + 24 : o + 40]) if flags & 2 else bytes(buf[o + 24 : o + 28])
                    spi = struct.unpack_from("<I", buf, o + 4)[0]
                    self.map[spi] = (slot, (bytes(buf[o + 8 : o + 16]), bytes(buf[o + 16 : o + 24]), bool(flags & 1), ip))
                else:
                    self.free.append(slot)
        if count_boot:
            self.boot_count += 1
            self._rewrite(0, lambda buf: struct.pack_into("<I", buf, 4, self.boot_count))

    def _rewrite(self, b, change):
        buf = bytearray(BLOCK)
        self.dev.readblocks(b, buf)
        change(buf)
        self.dev.writeblocks(b, buf)  # erase, then write: in place

    def secrets(self):
        return [self._secret]

    def child_get(self, spi):
        e = self.map.get(spi)
        return e[1] if e else None

    def child_put(self, spi, spi_i, spi_r, initiator, ip):
        e = self.map.get(spi)
        entry = (bytes(spi_i), bytes(spi_r), bool(initiator), bytes(ip))
        if e is not None and e[1] == entry:
            return
        slot = e[0] if e is not None else self.free.pop()
        b, i = divmod(slot, SLOTS_PER_BLOCK)
        o = 64 + i * SLOT

        def change(buf):
            buf[o] = 1
            buf[o + 1] = (1 if initiator else 0) | (2 if len(ip) == 16 else 0)
            struct.pack_into("<I", buf, o + 4, spi)
            buf[o + 8 : o + 16] = spi_i
            buf[o + 16 : o + 24] = spi_r
            buf[o + 24 : o + 40] = bytes(ip) + bytes(16 - len(ip))

        self._rewrite(b, change)
        self.map[spi] = (slot, entry)

    def child_drop(self, spi):
        e = self.map.pop(spi, None)
        if e is None:
            return
        b, i = divmod(e[0], SLOTS_PER_BLOCK)
        o = 64 + i * SLOT

        def change(buf):
            buf[o : o + SLOT] = bytes(SLOT)

        self._rewrite(b, change)
        self.free.append(e[0])

    def child_count(self):
        return len(self.map)

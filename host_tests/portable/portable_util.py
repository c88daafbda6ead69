# Helpers shared by the portable tests (CPython and MicroPython alike).
#
# MicroPython's unittest (micropython-lib) has a subset of the assertions:
# no assertGreater/assertNotIn/assertLess, and assertIsNotNone breaks on a
# tuple value. Portable tests use assertTrue/assertFalse for those.
import hashlib


def det_bytes(seed, n, start=0):
    """n deterministic pseudo-random bytes from an int seed (SHA-256 chain),
    from offset `start` (a multiple of 32) of that stream. Filled into one
    preallocated buffer: growing a bytes object 32 bytes at a time copies it
    at every step, which fragments a board's heap."""
    out = bytearray(n)
    for i in range(0, n, 32):
        d = hashlib.sha256(b"%d/%d" % (seed, (start + i) // 32)).digest()
        out[i : i + 32] = d[: n - i]
    return bytes(out)


def det_backing(seed, blocks):
    """A flash emulator backing holding det_bytes(seed, blocks * 4096) (a
    garbage partition), written 256 bytes at a time: no buffer of a block
    (let alone the image) besides the backing's own pieces."""
    from qcdhost.emu import flash as flashemu

    b = flashemu.MemoryBacking(blocks * flashemu.BLOCK_SIZE)
    for off in range(0, blocks * flashemu.BLOCK_SIZE, 256):
        b.write(off, det_bytes(seed, 256, off))
    return b


def spis(seed):
    b = det_bytes(seed, 16)
    # SPIs are never zero; make sure of it for the responder SPI too.
    return b[0:8], b[8:15] + b"\x01"


class SA:
    """What the notify hook reads of an engine's IKE SA (docs/hook.md)."""

    def __init__(self, spi_i, spi_r, initiator, peer):
        self.spi_i = spi_i
        self.spi_r = spi_r
        self.initiator = initiator
        self.peer = peer

# Helpers shared by the portable tests (CPython and MicroPython alike).
#
# MicroPython's unittest (micropython-lib) has a subset of the assertions:
# no assertGreater/assertNotIn/assertLess, and assertIsNotNone breaks on a
# tuple value. Portable tests use assertTrue/assertFalse for those.
import hashlib


def det_bytes(seed, n):
    """n deterministic pseudo-random bytes from an int seed (SHA-256 chain)."""
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d/%d" % (seed, i)).digest()
        i += 1
    return out[:n]


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

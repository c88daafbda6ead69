# Helpers shared by the portable store tests (test_store, test_store_wear):
# deterministic entries, a deterministic RNG, a fresh partition, a reboot.
from qcdhost.emu import flash as flashemu
from qcdhost.emu.flash import BLOCK_SIZE, FlashEmu, MemoryBacking
from portable_util import det_bytes
from qcd.store import Store

# Damage codes a device shows in status()["damage"] (qcd.log's _D_ names;
# qcdtool's DAMAGE table has the sentences).
D_ERASE = 3
D_HEADER_CRC = 5
D_DAMAGED = 9

I1, R1 = det_bytes(1, 8), det_bytes(2, 8)
I2, R2 = det_bytes(3, 8), det_bytes(4, 8)
IP4 = bytes([192, 0, 2, 7])
IP6 = det_bytes(5, 16)


class Rng:
    """Deterministic stand-in for os.urandom (the WebAssembly port has none)."""

    def __init__(self, seed=0):
        self.r = flashemu._Rand(seed)
        self.calls = 0

    def __call__(self, n):
        self.calls += 1
        return self.r.bytes(n)


def flip(backing, off, mask):
    """XOR one byte of the raw flash (damage the way a bad cell does)."""
    backing.write(off, bytes([backing.read(off, 1)[0] ^ mask]))


def fresh(blocks=4, encrypted=False, **kw):
    e = FlashEmu(MemoryBacking(blocks * BLOCK_SIZE), encrypted=encrypted)
    return e, Store(e, Rng(), **kw)


def reboot(e, **kw):
    e2 = e.reboot()
    return e2, Store(e2, Rng(99), **kw)


def same_map(tc, s, s2):
    """s2 holds exactly s's map (entry by entry: no sorted copies of two maps
    on a board's heap)."""
    tc.assertEqual(s2.child_count(), s.child_count())
    for spi, entry in s.children():
        tc.assertEqual(s2.child_get(spi), entry)


def churn(s, n, live=20, start=0):
    """n Child SA entries written, each dropped again after `live` more."""
    for i in range(start, start + n):
        s.child_put(1000 + i, I1 if i % 3 else I2, R1, True, IP4)
        if i - start >= live:
            s.child_drop(1000 + i - live)

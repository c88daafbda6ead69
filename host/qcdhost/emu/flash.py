# flashemu: an ESP32 flash partition, emulated, for the host and for the
# WebAssembly MicroPython (this module is portable: CPython and MicroPython).
#
# It speaks the esp32.Partition block protocol exactly as MicroPython exposes
# it (ports/esp32/esp32_partition.c; ../shared/docs/micropython-esp32-reference.md
# sections 1 and 2):
#
#   readblocks(n, buf[, off])    read len(buf) bytes at n*4096 (+off)
#   writeblocks(n, buf, off)     program len(buf) bytes at n*4096+off (no erase)
#   writeblocks(n, buf)          erase len(buf) bytes at n*4096 (a multiple of
#                                4096, else ESP_ERR_INVALID_SIZE), then program
#   ioctl(1|2|3, _) -> 0         init, deinit, sync
#   ioctl(4, _) -> block count   ioctl(5, _) -> 4096
#   ioctl(6, blk) -> 0           erase one 4096-byte block
#   ioctl(other) -> None
#
# Errors are what ESP-IDF returns through MicroPython's check_esp_err: an
# OSError whose errno is the NEGATED ESP-IDF code (ERR_INVALID_ARG -258,
# ERR_INVALID_SIZE -260, ERR_NOT_ALLOWED -269, ERR_FLASH_OP_FAIL -24577).
#
# What it enforces, loudly (FlashViolation, which is NOT an OSError, so a
# store that catches OSError cannot swallow it; `violations` counts them too):
#   NOR rules: erased bytes are 0xFF, a program can only clear bits (an
#     attempt to set one is a violation), erase is per 4096-byte block.
#   Program once: a program over bytes that are not erased (not 0xFF, or
#     holding unstable bits, below) is a violation too, even one that only
#     clears bits: the store promises never to program a byte twice.
#     `reprogram=True` allows clearing more bits of programmed bytes, as
#     NOR itself permits (plain mode only).
#   Flash-encryption mode (a partition flagged `encrypted`, ESP-IDF): offset
#     and length of a program 16-byte aligned (else -258 / -260, as
#     esp_flash_write_encrypted returns), each 16-byte chunk programmed at most
#     once per erase (a second program is a violation), and erased areas read
#     back through the decrypting readblocks as pseudo-random bytes, not 0xFF.
#
# The encryption model. Real chips encrypt with AES (ESP32: AES-256 with the
# key tweaked per 32-byte row; S2/S3/C3: XTS-AES); this model uses
#     physical = plaintext XOR keystream(address)
#     keystream(row) = SHA-256(device key | row address, 4 bytes LE), 32-byte rows
# It keeps the properties a store can observe through readblocks: ciphertext
# depends on the address and a per-device key; the image holds only
# ciphertext; erased flash (physical 0xFF) decrypts to a fixed pseudo-random
# pattern per address; NOR rules act on the physical (cipher) bits, so
# re-programming a chunk ANDs two unrelated ciphertexts. It is not a cipher
# anyone should use (XOR with a fixed per-address keystream), and it does not
# model the ESP32's 32-byte read-modify-write rows or XTS's 64-byte rows.
#
# Power cuts. `cut_at = N` tears the Nth program or erase operation of this
# emulator instance (counting from 1; a simple writeblocks is an erase per
# block and then one program): none or all of it, a random prefix of its
# bytes, a random subset of its bit clears, or a half-finished erase (a
# random subset of the bits set) reaches the flash, PowerCut is raised, and
# every later call raises PowerCut until "reboot": a new FlashEmu on the same
# backing. PowerCut
# derives from BaseException so that `except Exception` in the code under
# test does not swallow it.
#
# Unstable bits. Real NOR does not promise that an interrupted program or
# erase reads back the same twice: cells left between the two levels read as
# 1 on one read and 0 on the next. With `unstable=True` a torn operation also
# leaves such cells (a torn program: some of the bits it was clearing, or a
# single one when nothing else reached the cells, so the area may read as
# erased; a torn erase: some of the bits that were 0). Every read returns a
# fresh random value for them; a program over them is a violation (they are
# not erased); a complete erase of their block clears them. They are kept in
# the sidecar ("weak": {"blk": [[offset, masks], ...]}, masks being one
# byte's bit mask as an int, or a hex string of the masks of the bytes from
# offset on, written in runs of at most 32 bytes), since the cells keep
# their state across a reboot, whichever
# emulator reads them. Their random values are drawn in address order.
#
# Memory. The emulator runs on a board's small, fragmenting heap (the
# portable suite, `make test-board`): no allocation is bigger than 256 bytes
# of the image, and the masks of a program or erase (tearing, unstable and
# stuck bits) are big ints over at most 256 bytes, applied piece by piece; a
# 4 KiB random mask is read from the generator's stream in pieces, as the
# same bytes one draw would give.
#
# Wear. Every block has an erase counter (kept in the backing's sidecar, so
# it survives reboots). A block can be made worn with wear_out(): after a set
# number of erases it either fails to erase (OSError ERR_FLASH_OP_FAIL, the
# block is left half-erased) or erases with some bits stuck at 0 (a program
# then reads back wrong; that is the flash's fault, not a violation).
#
# Backing interface (implement it to put the emulator over other storage;
# the virtual board does so with a JS module under Node):
#   backing.size               bytes of the partition (a multiple of 4096)
#   backing.read(off, n)       -> n bytes of PHYSICAL flash at off
#   backing.write(off, data)   store physical bytes at off
#   backing.flush()            make the above durable (may do nothing)
#   backing.load_meta()        -> the sidecar dict, or None if there is none
#   backing.save_meta(meta)    store the sidecar dict (JSON-serialisable:
#                              str keys, ints, strs, bools, lists, dicts)
# The sidecar holds what the flash chip itself would keep but an image file
# cannot: {"flashemu": 1, "encrypted": bool, "key": hex of the 32-byte
# device key, "erases": [per-block counts], "worn": {"blk": [after, mode]},
# "seed": int}. The emulator writes it after every erase and on changes.
# MemoryBacking (a bytearray) and FileBacking (an image file IMAGE plus
# IMAGE.emu.json) are here; FileBacking uses only open/seek/read/write and
# json, which MicroPython has too.

import hashlib
import json

BLOCK_SIZE = 4096
CHUNK = 16  # flash-encryption block: alignment and program-once unit
_ROW = 32  # keystream row of the encryption model
_PIECE = 256  # unit of RAM allocation: MemoryBacking, keystream cache
_STEP = 256  # the longest stretch a program's or erase's big-int masks span
_WEAK_RUN = 32  # the most bytes of unstable-cell masks in one sidecar hex string

# ESP-IDF error codes (components/esp_common/include/esp_err.h), negated the
# way MicroPython's check_esp_err raises them.
ESP_ERR_INVALID_ARG = 0x102
ESP_ERR_INVALID_SIZE = 0x104
ESP_ERR_NOT_ALLOWED = 0x10D
ESP_ERR_FLASH_OP_FAIL = 0x6001  # ESP_ERR_FLASH_BASE (0x6000) + 1
_ERR_NAMES = {
    ESP_ERR_INVALID_ARG: "ESP_ERR_INVALID_ARG",
    ESP_ERR_INVALID_SIZE: "ESP_ERR_INVALID_SIZE",
    ESP_ERR_NOT_ALLOWED: "ESP_ERR_NOT_ALLOWED",
    ESP_ERR_FLASH_OP_FAIL: "ESP_ERR_FLASH_OP_FAIL",
}

# Block-device ioctl numbers (extmod/vfs.h).
IOCTL_INIT = 1
IOCTL_DEINIT = 2
IOCTL_SYNC = 3
IOCTL_BLOCK_COUNT = 4
IOCTL_BLOCK_SIZE = 5
IOCTL_BLOCK_ERASE = 6

# Wear modes for wear_out().
ERASE_FAILS = "erase-fails"
STUCK_BITS = "stuck-bits"

META_SUFFIX = ".emu.json"

# Keystreams of the last device key used, shared by the emulators of one
# image (a reboot is a new FlashEmu): [key, [256-byte piece keystream or
# None, ...], [pieces cached, oldest first]]. On MicroPython at most
# KS_CACHE_PIECES (4 KiB: one block, what the store reads and writes at a
# time) stay cached, so an encrypted partition does not hold its size again
# in keystream on a board's heap; CPython keeps all.
_ks_shared = [None, None, []]
try:
    import sys as _sys

    KS_CACHE_PIECES = 16 if _sys.implementation.name == "micropython" else 1 << 20
except (ImportError, AttributeError):
    KS_CACHE_PIECES = 16


class PowerCut(BaseException):
    """Power was cut: raised by the torn operation and every call after it."""


class FlashViolation(Exception):
    """A write that real flash would silently corrupt: the caller's bug."""


def esp_error(code):
    return OSError(-code, _ERR_NAMES.get(code, "ESP_FAIL"))


class _Rand:
    # A small deterministic generator (SHA-256 in counter mode), the same on
    # CPython and MicroPython, so a cut is reproducible from its seed.
    def __init__(self, seed):
        self.seed = b"flashemu/%d/" % seed
        self.n = 0
        self.pool = b""

    def bytes(self, k):
        # Filled into one buffer (not grown: a 4 KiB erase pattern built 32
        # bytes at a time would copy it a hundred times over).
        out = bytearray(k)
        got = 0
        while got < k:
            if not self.pool:
                self.pool = hashlib.sha256(self.seed + b"%d" % self.n).digest()
                self.n += 1
            take = min(k - got, len(self.pool))
            out[got : got + take] = self.pool[:take]
            got += take
            self.pool = self.pool[take:]
        return bytes(out)

    def below(self, k):
        return int.from_bytes(self.bytes(4), "big") % k

    # The stream is SHA-256(seed | n) for n = 0, 1, ...: byte q of it is
    # byte q % 32 of block q // 32. A mask drawn as bytes(4096) can thus be
    # read in pieces (at) and then stepped over (skip), giving the same
    # bytes as one draw without holding 4 KiB of it at once.
    def tell(self):
        return 32 * self.n - len(self.pool)

    def at(self, q, k):
        """k bytes of the stream from position q, without moving it."""
        out = bytearray(k)
        got = 0
        while got < k:
            n, o = divmod(q + got, 32)
            take = min(k - got, 32 - o)
            out[got : got + take] = hashlib.sha256(self.seed + b"%d" % n).digest()[o : o + take]
            got += take
        return bytes(out)

    def skip(self, k):
        q = self.tell() + k
        n, o = divmod(q, 32)
        if o:
            self.pool = hashlib.sha256(self.seed + b"%d" % n).digest()[o:]
            self.n = n + 1
        else:
            self.pool = b""
            self.n = n


_FF = [None]


def _ff_piece():
    # One erased piece's bytes, made once and shared: an erase writes it
    # once per piece (no 4 KiB buffer of 0xFF on a board's heap).
    if _FF[0] is None:
        _FF[0] = b"\xff" * _PIECE
    return _FF[0]


def _ones(n):
    return (1 << (8 * n)) - 1


def _bitlen(v):
    # int.bit_length(), which MicroPython's int lacks
    return len(bin(v)) - 2 if v else 0


def _int(b):
    return int.from_bytes(b, "big")


def _bytes(v, n):
    return v.to_bytes(n, "big")



def _clone(x):
    # A deep copy of a sidecar (dicts, lists, and immutable leaves).
    if isinstance(x, dict):
        return {k: _clone(x[k]) for k in x}
    if isinstance(x, list):
        return [_clone(v) for v in x]
    return x


class MemoryBacking:
    """The partition in RAM, in 256-byte pieces: one bytearray per piece
    programmed since its last erase (an erased piece holds nothing and reads
    as 0xFF); the sidecar in a dict. No allocation is bigger than a piece
    and the image is never held twice, so the emulator fits the fixed, and
    fragmenting, heap of the board the portable suite runs on (`make
    test-board`; a 64 KiB image in one bytearray would not). A copy() is a
    snapshot that shares the pieces until one side writes to them (copy on
    write: a power-cut sweep's copy per cut costs the pieces it changes, not
    the image); tests reboot by building a new FlashEmu on the same object.
    `data` is the whole image as one new bytearray (a copy: write() is what
    changes the backing). over() makes one that reads as another backing
    (a FrozenImage: a snapshot in a file) wherever it has not been written:
    it holds only the pieces written since."""

    def __init__(self, size=None, data=None, meta=None):
        if data is not None:
            size = len(data)
        if size is None or size % BLOCK_SIZE:
            raise ValueError("size must be a multiple of %d" % BLOCK_SIZE)
        self.size = size
        self.pieces = [None] * (size // _PIECE)
        # per piece: 1 this backing's own, 0 shared with a copy (or erased,
        # if None), 2 not held: read from self.base
        self.mine = bytearray(size // _PIECE)
        self.base = None
        # Buffers of this backing's own pieces that it no longer uses (erased,
        # or dropped when a copy() overwrote it), for its next programs: a
        # store erases and programs the same blocks over and over, and a
        # power-cut sweep copies its start into the same working backing
        # once a cut. A fresh 256-byte allocation each time, with small
        # objects filling the holes the freed ones leave, fragments a board's
        # heap until no 256 bytes are left in one piece. They are never more
        # than the image has pieces.
        self.free = []
        if data is not None:
            self.write(0, data)
        self.meta = meta

    @property
    def data(self):
        out = bytearray(self.size)
        for off in range(0, self.size, _PIECE):
            out[off : off + _PIECE] = self.read(off, _PIECE)
        return out

    def read(self, off, n):
        if n <= 0:
            return b""
        out = bytearray(n)
        got = 0
        ff = memoryview(_ff_piece())
        while got < n:
            p, o = divmod(off + got, _PIECE)
            take = min(n - got, _PIECE - o)
            pc = self.pieces[p]
            if pc is not None:
                out[got : got + take] = memoryview(pc)[o : o + take]
            elif self.mine[p] == 2:
                out[got : got + take] = self.base.read(off + got, take)
            else:
                out[got : got + take] = ff[:take]
            got += take
        return bytes(out)

    def write(self, off, data):
        n = len(data)
        mv = memoryview(data)
        ff = memoryview(_ff_piece())
        done = 0
        while done < n:
            p, o = divmod(off + done, _PIECE)
            take = min(n - done, _PIECE - o)
            part = mv[done : done + take]
            pc = self.pieces[p]
            if take == _PIECE and (data is _FF[0] or bytes(part) == _ff_piece()):
                self.pieces[p] = None  # a whole erased piece holds nothing
                if pc is not None and self.mine[p]:
                    self.free.append(pc)
                self.mine[p] = 0
            else:
                if pc is None or not self.mine[p]:
                    # a new piece: erased, the base's, or a copy of the one
                    # shared with a copy
                    if pc is not None:
                        src = pc
                    elif self.mine[p] == 2:
                        src = self.base.read(p * _PIECE, _PIECE)
                    else:
                        src = ff[:_PIECE]
                    if self.free:
                        pc = self.free.pop()
                        pc[:] = src
                    else:
                        pc = bytearray(src)
                    self.pieces[p] = pc
                    self.mine[p] = 1
                pc[o : o + take] = part
            done += take

    def flush(self):
        pass

    def load_meta(self):
        return self.meta

    def save_meta(self, meta):
        self.meta = meta

    def copy(self, into=None):
        """A snapshot: a new MemoryBacking, or `into` (one of the same size)
        overwritten, sharing this one's pieces until either writes to them."""
        meta = _clone(self.meta)  # not a JSON round trip: no string of the whole sidecar
        if into is None:
            into = MemoryBacking(self.size)
        elif into.size != self.size:
            raise ValueError("copy into a backing of %d bytes, not %d" % (into.size, self.size))
        for i in range(len(self.pieces)):
            if into.mine[i] == 1 and into.pieces[i] is not None:
                into.free.append(into.pieces[i])
            into.pieces[i] = self.pieces[i]
            into.mine[i] = self.mine[i] = 2 if self.mine[i] == 2 else 0
        into.base = self.base
        into.meta = meta
        return into


def over(base, into=None):
    """A MemoryBacking that reads as `base` (a backing that is not written
    any more, e.g. a FrozenImage) until it is written, and holds in RAM only
    the pieces written since; its sidecar starts as a copy of base's. `into`:
    a MemoryBacking of the same size to reuse (its pieces are dropped)."""
    if into is None:
        into = MemoryBacking(base.size)
    elif into.size != base.size:
        raise ValueError("copy into a backing of %d bytes, not %d" % (into.size, base.size))
    for i in range(len(into.pieces)):
        if into.mine[i] == 1 and into.pieces[i] is not None:
            into.free.append(into.pieces[i])
        into.pieces[i] = None
        into.mine[i] = 2
    into.base = base
    into.meta = _clone(base.load_meta())
    return into


class FrozenImage:
    """A backing's state frozen into an image file (its physical bytes,
    written 256 bytes at a time) and its sidecar, held in RAM: read-only.
    copy() gives a MemoryBacking over it (over()): a power-cut sweep keeps
    its start image here, out of a board's heap, and each cut's working
    image holds only the pieces that cut's run writes. Portable: open, seek,
    read, write (a board's filesystem; MEMFS on the WebAssembly port)."""

    def __init__(self, backing, path):
        self.path = path
        self.size = backing.size
        with open(path, "wb") as f:
            for off in range(0, self.size, _PIECE):
                f.write(backing.read(off, _PIECE))
        self.meta = _clone(backing.load_meta())
        self.f = open(path, "rb")

    def read(self, off, n):
        self.f.seek(off)
        return self.f.read(n)

    def write(self, off, data):
        raise OSError("a FrozenImage is read-only")

    def flush(self):
        pass

    def load_meta(self):
        return self.meta

    def save_meta(self, meta):
        raise OSError("a FrozenImage is read-only")

    def copy(self, into=None):
        return over(self, into)

    def close(self, remove=True):
        """Close the file, and (remove=True) delete it."""
        self.f.close()
        if remove:
            import os

            os.remove(self.path)


class FileBacking:
    """An image file (raw physical bytes: what `esptool read-flash` gives for
    the partition) plus a JSON sidecar IMAGE.emu.json."""

    def __init__(self, path, readonly=False):
        self.path = path
        self.meta_path = path + META_SUFFIX
        self.f = open(path, "rb" if readonly else "r+b")
        self.f.seek(0, 2)
        self.size = self.f.tell()
        self.readonly = readonly

    def read(self, off, n):
        self.f.seek(off)
        return self.f.read(n)

    def write(self, off, data):
        # Handed to the OS at once: a process killed right after an
        # acknowledged write (a power cut from outside) still has it.
        self.f.seek(off)
        self.f.write(data)
        self.f.flush()

    def flush(self):
        self.f.flush()

    def load_meta(self):
        try:
            with open(self.meta_path) as f:
                return json.loads(f.read())
        except OSError:
            return None

    def save_meta(self, meta):
        if self.readonly:
            return
        # The sidecar of an encrypted image holds its device key: created
        # 0600 and replaced whole (a fresh file, then a rename), so it is
        # never readable by others and a kill never leaves half of it
        # (qcdhost.private; CPython only, as FileBacking is).
        from qcdhost import private

        private.write(self.meta_path, json.dumps(meta).encode())

    def close(self):
        self.f.close()


def create_image(path, blocks, encrypted=False, key=None):
    """Write an erased partition image (all 0xFF) of `blocks` blocks and its
    sidecar. `key`: the 32-byte device key of the encryption model (random
    from os.urandom when not given). Both files are created 0600 (the image
    will hold the secret, in clear unless encrypted), atomically."""
    from qcdhost import private

    private.write(path, b"\xff" * (blocks * BLOCK_SIZE))
    b = FileBacking(path)
    b.save_meta(new_meta(blocks, encrypted, key))
    b.close()


def new_meta(blocks, encrypted=False, key=None, seed=0):
    if encrypted and key is None:
        import os

        key = os.urandom(32)
    return {
        "flashemu": 1,
        "encrypted": bool(encrypted),
        "key": bytes(key).hex() if key is not None else "",
        "erases": [0] * blocks,
        "worn": {},
        "seed": seed,
    }


class FlashEmu:
    """An esp32.Partition over a backing (see the module header).

    backing    MemoryBacking, FileBacking or anything with that interface
    encrypted, key   only used when the backing has no sidecar yet (a raw
               image): the mode and device key to record for it
    cut_at     tear the Nth program/erase operation (None: never)
    seed       seeds the tearing pattern (reproducible cuts)
    readonly   refuse writes and erases with ESP_ERR_NOT_ALLOWED (a partition
               flagged readonly; also what tools use to inspect an image)
    reprogram  allow a program over programmed bytes that only clears bits
               (plain NOR semantics; by default that is a violation)
    unstable   a torn program or erase leaves bits that read back unstable
    """

    def __init__(self, backing, encrypted=False, key=None, cut_at=None, seed=0, readonly=False, reprogram=False, unstable=False):
        if backing.size % BLOCK_SIZE or backing.size == 0:
            raise ValueError("partition size %d is not a positive multiple of %d" % (backing.size, BLOCK_SIZE))
        self.backing = backing
        self.size = backing.size
        self.blocks = backing.size // BLOCK_SIZE
        meta = backing.load_meta()
        self.meta_from_sidecar = meta is not None
        if meta is None:
            meta = new_meta(self.blocks, encrypted, key if key is not None else (hashlib.sha256(b"flashemu key %d" % seed).digest() if encrypted else None), seed)
            if not readonly:
                backing.save_meta(meta)
        if len(meta.get("erases", ())) != self.blocks:
            meta["erases"] = (list(meta.get("erases", ())) + [0] * self.blocks)[: self.blocks]
        self.meta = meta
        self.encrypted = bool(meta.get("encrypted"))
        self.key = bytes.fromhex(meta.get("key") or "")
        self.erase_counts = meta["erases"]
        self.readonly = readonly
        self.cut_at = cut_at
        self.dead = False
        self.rand = _Rand(seed)
        if _ks_shared[0] != self.key or len(_ks_shared[1]) != self.size // _PIECE:
            _ks_shared[0] = self.key
            _ks_shared[1] = [None] * (self.size // _PIECE)
            _ks_shared[2] = []
        self._ks = _ks_shared[1]  # keystream per 256-byte piece, computed on first use
        self._stuck = {}
        # Counters of this instance (a "boot"): operations as the flash sees them.
        self.ops = 0  # program + erase operations (what cut_at counts)
        self.reads = 0
        self.bytes_read = 0
        self.programs = 0
        self.bytes_programmed = 0
        self.erases = 0
        self.violations = 0
        self.last_violation = None
        self.torn = None  # description of the torn operation, after a cut
        self.reprogram = reprogram
        self.unstable = unstable
        self._weak_load()  # the unstable cells (_weak_piece)

    # -- the esp32.Partition protocol ------------------------------------------

    def readblocks(self, n, buf, off=0):
        self._alive()
        addr = n * BLOCK_SIZE + off
        ln = len(buf)
        self._range(addr, ln)
        self.reads += 1
        self.bytes_read += ln
        # 256 bytes at a time, into buf: no temporary of the read's size.
        i = 0
        while i < ln:
            n = min(ln - i, 256)
            data = self.backing.read(addr + i, n)
            if self.encrypted:
                data = self._crypt(addr + i, data)
            if self._weak:
                data = self._weak_read(addr + i, data)
            buf[i : i + n] = data
            i += n

    def writeblocks(self, n, buf, off=None):
        self._alive()
        if self.readonly:
            raise esp_error(ESP_ERR_NOT_ALLOWED)
        addr = n * BLOCK_SIZE
        if off is None:
            # MicroPython's simple form: esp_partition_erase_range(addr,
            # len(buf)) and then esp_partition_write.
            ln = len(buf)
            self._range(addr, ln)
            if ln % BLOCK_SIZE:
                raise esp_error(ESP_ERR_INVALID_SIZE)
            for b in range(n, n + ln // BLOCK_SIZE):
                self._erase(b)
        else:
            addr += off
        self._program(addr, bytes(buf))

    def ioctl(self, op, arg):
        if op == IOCTL_INIT or op == IOCTL_DEINIT or op == IOCTL_SYNC:
            self._alive()
            return 0
        if op == IOCTL_BLOCK_COUNT:
            return self.blocks
        if op == IOCTL_BLOCK_SIZE:
            return BLOCK_SIZE
        if op == IOCTL_BLOCK_ERASE:
            self._alive()
            if self.readonly:
                raise esp_error(ESP_ERR_NOT_ALLOWED)
            self._range(arg * BLOCK_SIZE, BLOCK_SIZE)
            self._erase(arg)
            return 0
        return None

    # -- wear -------------------------------------------------------------------

    def wear_out(self, block, after, mode=ERASE_FAILS):
        """From the `after`th erase of `block` on, its erases fail (mode
        ERASE_FAILS) or leave bits stuck at 0 (STUCK_BITS). Kept in the sidecar."""
        if mode != ERASE_FAILS and mode != STUCK_BITS:
            raise ValueError("wear mode must be %r or %r" % (ERASE_FAILS, STUCK_BITS))
        self.meta["worn"][str(block)] = [after, mode]
        self._stuck.pop(block, None)
        self._save_meta()

    def _wear(self, block):
        w = self.meta.get("worn", {}).get(str(block))
        if w is None or self.erase_counts[block] < w[0]:
            return None
        return w[1]

    def _stuck_rows(self, block):
        # Bits stuck at 0 in a worn block: one bit in each 32-byte row (about
        # one bit in 256), fixed per block. Kept as (offset in the row, bit)
        # per row: 256 bytes, not a 4 KiB mask.
        m = self._stuck.get(block)
        if m is None:
            r = _Rand(self.meta.get("seed", 0) * 1000003 + block + 7)
            m = bytearray(2 * (BLOCK_SIZE // 32))
            for row in range(BLOCK_SIZE // 32):
                raw = r.bytes(32)
                m[2 * row] = raw[0] % 32
                m[2 * row + 1] = 1 << (raw[1] % 8)
            self._stuck[block] = m
        return m

    def _stuck_bits(self, addr, ln):
        # The stuck mask (as an int over `ln` bytes at `addr`), or 0.
        if not self.meta.get("worn"):
            return 0
        out = None
        a = addr
        end = addr + ln
        while a < end:
            b = a // BLOCK_SIZE
            stop = min(end, (b + 1) * BLOCK_SIZE)
            if self._wear(b) == STUCK_BITS:
                if out is None:
                    out = bytearray(ln)
                rows = self._stuck_rows(b)
                base = b * BLOCK_SIZE
                for row in range((a - base) // 32, (stop - base + 31) // 32):
                    at = base + 32 * row + rows[2 * row]
                    if a <= at < stop:
                        out[at - addr] = rows[2 * row + 1]
            a = stop
        return _int(out) if out is not None else 0

    # -- internals ----------------------------------------------------------------

    def _alive(self):
        if self.dead:
            raise PowerCut("the power is off (cut at operation %d); reboot: a new FlashEmu on this backing" % self.cut_at)

    def _range(self, addr, ln):
        # partition_target.c: start beyond the end is INVALID_ARG, a range
        # running past the end is INVALID_SIZE.
        if addr < 0 or addr > self.size:
            raise esp_error(ESP_ERR_INVALID_ARG)
        if addr + ln > self.size:
            raise esp_error(ESP_ERR_INVALID_SIZE)

    def _save_meta(self):
        if not self.readonly:
            self.backing.save_meta(self.meta)

    def _piece_ks(self, p):
        # The keystream of 256-byte piece p of the partition, from the shared
        # cache (pieces, not blocks: no 4 KiB allocation on a board's heap).
        # The oldest piece's buffer is reused for the new one: a fixed set of
        # buffers, not an allocation per miss (which fragments a small heap).
        ks = self._ks[p]
        if ks is None:
            cached = _ks_shared[2]
            if len(cached) >= KS_CACHE_PIECES:
                old = cached.pop(0)
                ks = self._ks[old]
                self._ks[old] = None
            else:
                ks = bytearray(_PIECE)
            base = p * _PIECE
            for r in range(0, _PIECE, _ROW):
                ks[r : r + _ROW] = hashlib.sha256(self.key + (base + r).to_bytes(4, "little")).digest()
            cached.append(p)
            self._ks[p] = ks
        return ks

    def _crypt(self, addr, data):
        # XOR with the keystream, 256 bytes at a time: one big-int XOR over a
        # whole block would take six 4 KiB temporaries on a board's heap.
        ln = len(data)
        if not ln:
            return data
        out = bytearray(ln)
        i = 0
        while i < ln:
            p, o = divmod(addr + i, _PIECE)
            n = min(ln - i, _PIECE - o, 256)
            ks = self._piece_ks(p)
            out[i : i + n] = _bytes(_int(data[i : i + n]) ^ _int(ks[o : o + n]), n)
            i += n
        return bytes(out)

    def _tick(self):
        # Count one program/erase operation; True when this one is torn.
        self.ops += 1
        return self.cut_at is not None and self.ops == self.cut_at

    def _violation(self, msg):
        self.violations += 1
        self.last_violation = msg
        raise FlashViolation(msg)

    def _piece(self, addr, data, i, n):
        # Piece [i, i+n) of a program of `data` at addr, as ints over n
        # bytes: (old physical bytes, stuck mask, old as the rules see it,
        # new physical bytes). A program is checked and applied piece by
        # piece, so no big int spans more than _STEP bytes of it.
        old = _int(self.backing.read(addr + i, n))
        stuck = self._stuck_bits(addr + i, n)
        d = bytes(data[i : i + n])
        phys = _int(self._crypt(addr + i, d)) if self.encrypted else _int(d)
        return old, stuck, old | stuck, phys  # stuck cells count as erased: not the writer's fault

    def _program(self, addr, data):
        ln = len(data)
        if self.encrypted:
            # esp_flash_write_encrypted: 16-byte aligned address and length.
            if addr % CHUNK:
                raise esp_error(ESP_ERR_INVALID_ARG)
            if ln % CHUNK:
                raise esp_error(ESP_ERR_INVALID_SIZE)
        self._range(addr, ln)
        if not ln:
            return
        # The rules, piece by piece; the first offence of each kind is
        # reported, in the order a whole-program check reports them.
        twice = setbit = unerased = -1
        ff = b"\xff" * CHUNK
        for i in range(0, ln, _STEP):
            n = min(ln - i, _STEP)
            _, _, o, phys = self._piece(addr, data, i, n)
            full = _ones(n)
            if self.encrypted:
                if twice < 0:
                    ob = _bytes(o, n)
                    for c in range(0, n, CHUNK):
                        if ob[c : c + CHUNK] != ff:
                            twice = i + c
                            break
            else:
                if setbit < 0 and (phys | o) != o:
                    setbit = i + n - 1 - (_bitlen((phys | o) ^ o) - 1) // 8
                if unerased < 0 and o != full:
                    unerased = i + n - 1 - (_bitlen(o ^ full) - 1) // 8
        if twice >= 0:
            self._violation("flash encryption: 16-byte chunk at 0x%x programmed twice since its last erase" % (addr + twice))
        if setbit >= 0:
            self._violation("NOR flash: program at 0x%x would set bits that are 0 (an erase is needed)" % (addr + setbit))
        if unerased >= 0 and not self.reprogram:
            # Plain mode: every byte programmed must be erased (0xFF; a cell
            # stuck at 0 counts as erased, the flash is at fault there).
            self._violation("NOR flash: program at 0x%x over bytes not erased since the last erase" % (addr + unerased))
        if self._weak:
            self._weak_check(addr, ln)
        tear = None
        if self._tick():
            tear = self._tear_program(ln)
            if self.unstable:
                self._weak_torn_program(addr, data, ln, tear)
        for i in range(0, ln, _STEP):
            n = min(ln - i, _STEP)
            old, stuck, _, phys = self._piece(addr, data, i, n)
            full = _ones(n)
            if tear is not None:
                phys |= full ^ self._keep(tear, i, n)
            self.backing.write(addr + i, _bytes(old & phys & (full ^ stuck), n))
        if tear is not None:
            self.backing.flush()
            self._cut()
        self.programs += 1
        self.bytes_programmed += ln

    def _tear_program(self, ln):
        # What reaches the cells when power fails mid-program: of the bits
        # the program clears, only those where the "keep" mask has a 1
        # (_keep). Drawn here: (mode, k, the half-done byte, where a random
        # mask starts in self.rand).
        mode = self.rand.below(5)
        k = kb = q = 0
        if mode == 0:
            # the cut came before the cells were touched
            self.torn = "program: none of %d bytes" % ln
        elif mode == 1:
            # the cut came just after the program finished
            self.torn = "program: all %d bytes (but not acknowledged)" % ln
        elif mode == 2:
            # a prefix of the bytes
            k = self.rand.below(ln + 1)
            self.torn = "program: first %d of %d bytes" % (k, ln)
        elif mode == 3:
            # a random subset of the bit clears (a mask of ln random bytes)
            q = self.rand.tell()
            self.rand.skip(ln)
            self.torn = "program: a random half of the bit clears of %d bytes" % ln
        else:
            # a prefix, then one byte half done
            k = self.rand.below(ln)
            kb = self.rand.bytes(1)[0]
            self.torn = "program: first %d of %d bytes and part of the next" % (k, ln)
        return (mode, k, kb, q)

    def _keep(self, tear, i, n):
        # The keep mask of a torn program over its bytes [i, i+n), an int.
        mode, k, kb, q = tear
        if mode == 0:
            return 0
        if mode == 1:
            return _ones(n)
        if mode == 3:
            return _int(self.rand.at(q + i, n))
        m = bytearray(n)
        for j in range(i, min(k, i + n)):
            m[j - i] = 0xFF
        if mode == 4 and i <= k < i + n:
            m[k - i] = kb
        return _int(m)

    def _erase(self, block):
        torn = self._tick()
        mode = self._wear(block)
        self.erases += 1
        self.erase_counts[block] += 1
        addr = block * BLOCK_SIZE
        stuck = mode == STUCK_BITS
        if torn or mode == ERASE_FAILS:
            # Half-finished: a random subset of the bits go back to 1. The
            # masks are drawn as 4 KiB of self.rand each and applied a piece
            # at a time (no 4 KiB int on a board's heap).
            how = self.rand.below(4)
            q = self.rand.tell()
            if how == 1 or how == 2:
                # each bit set with probability 1/4 or 3/4: a & b or a | b
                self.rand.skip(2 * BLOCK_SIZE)
            weak = torn and self.unstable and how != 3
            qw = self.rand.tell()
            if weak:
                self.rand.skip(4 * BLOCK_SIZE)
            marked = False
            full = _ones(_PIECE)
            for i in range(0, BLOCK_SIZE, _PIECE):
                old = _int(self.backing.read(addr + i, _PIECE))
                if how == 0:
                    setmask = 0
                elif how == 3:
                    setmask = full
                else:
                    x = _int(self.rand.at(q + i, _PIECE))
                    y = _int(self.rand.at(q + BLOCK_SIZE + i, _PIECE))
                    setmask = (x & y) if how == 1 else (x | y)
                if stuck:
                    setmask &= full ^ self._stuck_bits(addr + i, _PIECE)
                if weak:
                    # Bits that were 0 before the erase: about one in sixteen
                    # is left between the levels, whether or not it was set.
                    r = full
                    for k in range(4):
                        r &= _int(self.rand.at(qw + k * BLOCK_SIZE + i, _PIECE))
                    marked = self._weak_mark(addr + i, (full ^ old) & r, _PIECE) or marked
                self.backing.write(addr + i, _bytes(old | setmask, _PIECE))
            self.backing.flush()
            if marked:
                self._weak_save()
            self._save_meta()
            if torn:
                self.torn = "erase of block %d: %s" % (block, ("nothing", "a quarter of the bits", "three quarters of the bits", "all bits")[how])
                self._cut()
            raise esp_error(ESP_ERR_FLASH_OP_FAIL)
        for i in range(0, BLOCK_SIZE, _PIECE):
            if stuck:
                self.backing.write(addr + i, _bytes(_ones(_PIECE) ^ self._stuck_bits(addr + i, _PIECE), _PIECE))
            else:
                self.backing.write(addr + i, _ff_piece())
        self._weak_clear(block)
        self._save_meta()

    # -- program once, and unstable bits (see the module header) --------------

    # The unstable cells: {block: [None or bytearray(_PIECE) of bit masks,
    # one per 256-byte piece of the block]}. A torn erase can leave a
    # thousand and more of them in a block: pieces, not a dict of offsets,
    # keep that within small allocations on a board's heap.

    def _weak_piece(self, blk, p, make=False):
        m = self._weak.get(blk)
        if m is None:
            if not make:
                return None
            m = self._weak[blk] = [None] * (BLOCK_SIZE // _PIECE)
        pc = m[p]
        if pc is None and make:
            pc = m[p] = bytearray(_PIECE)
        return pc

    def _weak_load(self):
        # Sidecar: {"blk": [[offset, mask], ...]}, a mask being one byte's
        # bits (an int) or a hex string: the masks of the bytes from offset on.
        self._weak = {}
        for k, pairs in (self.meta.get("weak") or {}).items():
            blk = int(k)
            for off, mask in pairs:
                mb = bytes.fromhex(mask) if isinstance(mask, str) else bytes([mask])
                for j in range(len(mb)):
                    if mb[j]:
                        p, o = divmod(off + j, _PIECE)
                        self._weak_piece(blk, p, True)[o] |= mb[j]
        return self._weak

    def _weak_save(self):
        out = {}
        for b in sorted(self._weak):
            pairs = []
            for p in range(BLOCK_SIZE // _PIECE):
                pc = self._weak[b][p]
                if pc is None:
                    continue
                lo, hi = 0, _PIECE
                while lo < hi and not pc[lo]:
                    lo += 1
                while hi > lo and not pc[hi - 1]:
                    hi -= 1
                if hi - lo == 1:
                    pairs.append([p * _PIECE + lo, pc[lo]])
                # Runs of at most _WEAK_RUN bytes: a torn erase can leave a
                # whole block unstable, and one hex string per piece (512
                # characters) is an allocation a board's fragmented heap
                # often has no room for.
                for a in range(lo, hi if hi - lo > 1 else lo, _WEAK_RUN):
                    pairs.append([p * _PIECE + a, bytes(pc[a : min(hi, a + _WEAK_RUN)]).hex()])
            if pairs:
                out[str(b)] = pairs
        if out:
            self.meta["weak"] = out
        else:
            self.meta.pop("weak", None)

    def _weak_mark(self, addr, mask_int, ln):
        # Mark the bits set in mask_int (an int over ln bytes at addr)
        # unstable; True if there were any. The caller saves (_weak_save).
        if not mask_int:
            return False
        mb = _bytes(mask_int, ln)
        for i in range(ln):
            if mb[i]:
                blk, off = divmod(addr + i, BLOCK_SIZE)
                p, o = divmod(off, _PIECE)
                self._weak_piece(blk, p, True)[o] |= mb[i]
        return True

    def _weak_clear(self, block):
        if self._weak.pop(block, None) is not None:
            self._weak_save()

    def _weak_cells(self, addr, end):
        # (address, mask) of the unstable cells in [addr, end), lowest first.
        a = addr
        while a < end:
            blk, off = divmod(a, BLOCK_SIZE)
            p, o = divmod(off, _PIECE)
            stop = min(end, a + _PIECE - o)
            pc = self._weak_piece(blk, p)
            if pc is not None:
                for j in range(o, o + stop - a):
                    if pc[j]:
                        yield a - o + j, pc[j]
            a = stop

    def unstable_bits(self, block):
        """[(offset, bit mask)] of the block's unstable cells, lowest first."""
        base = block * BLOCK_SIZE
        return [(a - base, m) for a, m in self._weak_cells(base, base + BLOCK_SIZE)]

    def _weak_read(self, addr, data):
        # Unstable bits read as a fresh random value on every read (drawn
        # in address order: the same on CPython and MicroPython).
        out = None
        for a, mask in self._weak_cells(addr, addr + len(data)):
            if out is None:
                out = bytearray(data)
            out[a - addr] = (out[a - addr] & (0xFF ^ mask)) | (self.rand.bytes(1)[0] & mask)
        return bytes(out) if out is not None else data

    def _weak_check(self, addr, ln):
        for a, _ in self._weak_cells(addr, addr + ln):
            self._violation("NOR flash: program at 0x%x over unstable bits (a torn program or erase, not erased since)" % a)

    def _weak_torn_program(self, addr, data, ln, tear):
        # Of the bits this program clears (0 in its physical bytes), those
        # the cut left unset (0 in the keep mask) are candidates: about a
        # quarter become unstable; if none reached the cells, one of them (so
        # the area may read erased). Worked out a piece at a time.
        top = -1  # bit length of the candidates as one big-endian int
        every = True  # every clear was left unset

        def left(i, n):
            phys = self._piece(addr, data, i, n)[3]
            full = _ones(n)
            clears = full ^ phys
            return clears & (full ^ self._keep(tear, i, n)), clears

        for i in range(0, ln, _STEP):
            n = min(ln - i, _STEP)
            lf, clears = left(i, n)
            if lf and top < 0:
                top = 8 * (ln - i - n) + _bitlen(lf)
            if lf != clears:
                every = False
        if top < 0:
            return
        marked = False
        if every:
            # one bit, at or above a random bit position (wrapping round)
            def find(lo):
                i = (ln - 1) // _STEP * _STEP
                while i >= 0:
                    n = min(ln - i, _STEP)
                    base = 8 * (ln - i - n)
                    if base + 8 * n > lo:
                        x = left(i, n)[0] >> max(0, lo - base)
                        if x:
                            return max(lo, base) + _bitlen(x & -x) - 1
                    i -= _STEP
                return -1

            pick = find(self.rand.below(top))
            if pick < 0:
                pick = find(0)
            marked = self._weak_mark(addr + ln - 1 - pick // 8, 1 << (pick % 8), 1)
            count = 1
        else:
            q = self.rand.tell()
            self.rand.skip(2 * ln)
            count = 0
            for i in range(0, ln, _STEP):
                n = min(ln - i, _STEP)
                w = left(i, n)[0] & _int(self.rand.at(q + i, n)) & _int(self.rand.at(q + ln + i, n))
                count += bin(w).count("1")
                marked = self._weak_mark(addr + i, w, n) or marked
        if marked:
            self._weak_save()
            self._save_meta()
        self.torn += ", %d unstable bit(s)" % count

    def _cut(self):
        self.dead = True
        raise PowerCut("power cut during operation %d (%s)" % (self.ops, self.torn))

    # -- for tests and tools -----------------------------------------------------

    def reboot(self, cut_at=None, seed=0):
        """A new emulator on the same backing: what the flash holds after the
        power comes back. Counters of this instance are not carried over."""
        self.backing.flush()
        return FlashEmu(self.backing, cut_at=cut_at, seed=seed, readonly=self.readonly, reprogram=self.reprogram, unstable=self.unstable)

    def stats(self):
        return {
            "ops": self.ops,
            "reads": self.reads,
            "bytes_read": self.bytes_read,
            "programs": self.programs,
            "bytes_programmed": self.bytes_programmed,
            "erases": self.erases,
            "violations": self.violations,
        }

    def physical(self, addr, n):
        """Raw physical bytes (what esptool read-flash would dump)."""
        return self.backing.read(addr, n)

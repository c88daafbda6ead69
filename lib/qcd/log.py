# qcd.log: the record log under qcd.store (docs/FORMAT.md: Blocks, Records,
# Writing, Reading). It knows blocks, block headers, the record frame (tag,
# CRC seeded with the block's seq, forward CRC), appending, compaction and
# the mount scan; not what the records mean. That is qcd.store's (secrets,
# the Child SPI map, the boot counter), which the log calls back:
#
#   owner._apply(rec, pos, typ, ln, blk)   a valid record (rec: its bytes,
#                                          from index 0) at offset pos of
#                                          block blk (mount, in log order)
#   owner._live_bytes(blk)                 upper bound of what compacting
#                                          blk writes
#   owner._copies(gc, drop)                (records to copy out of the blocks
#                                          in gc, unsealed, each with its
#                                          Child SPI or None: an iterable,
#                                          gone through once; owner's token
#                                          for _moved, complete once it is;
#                                          whether the latest
#                                          record of Child SPI `drop` is in gc,
#                                          so it was not copied)
#   owner._moved(gc, h, slots, token)      the copies are committed in block h
#
# It reaches the partition only through the esp32.Partition block protocol
# (readblocks/writeblocks with offset, ioctl BLOCK_COUNT/BLOCK_SIZE/
# BLOCK_ERASE) and obeys what real and encrypted flash demand (design.md
# principles 3 and 4): erase per 4096-byte block, programs 16-byte aligned,
# each byte programmed once per erase, erased flash not assumed to read 0xFF.
# No block found at mount is programmed before it is erased: each boot's
# first write opens a block, which takes the whole log if it fits, so a torn
# region (whose bits may read differently on every read) is never programmed
# over nor read again.

import struct
from binascii import crc32  # the CRC-32 of FORMAT.md (unsigned on CPython and MicroPython)

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


BLOCK_SIZE = const(4096)
MIN_BLOCKS = const(4)
MAX_BLOCKS = const(255)
HEADER_LEN = const(32)
CHUNK = const(16)  # flash-encryption block: every record is a multiple of it
WINDOW = const(48)  # forward-CRC window: the longest record, so a torn write lies inside it
_SCAN = const(256)  # mount reads a block in pieces of this size (see _need)
RESERVE = const(2)  # free blocks kept besides the one being opened (FORMAT.md, Compaction)
U32 = const(0xFFFFFFFF)
_MAGIC = const(b"QCDP")
VERSION = const(1)
_MAX_DAMAGE = const(16)  # damage reports kept for status(); more are counted

# Block-device ioctls (MicroPython extmod/vfs.h), as esp32.Partition answers them.
_IOCTL_BLOCK_COUNT = const(4)
_IOCTL_BLOCK_SIZE = const(5)
_IOCTL_BLOCK_ERASE = const(6)

# Block states (status(), block_info() and qcdtool inspect).
S_BLANK = "blank"  # no valid header: erased, never used, or damaged
S_LIVE = "live"  # in the log
S_STALE = "stale"  # a valid header older than the log's base: free, awaiting reuse
S_ORPHAN = "orphan"  # valid header not on the log's chain (an interrupted open): free
S_FOREIGN = "foreign"  # our magic, another format version: left alone, never written
S_BAD = "bad"  # an erase or a verified write failed this boot: not used until reboot

# Damage reports (status()["damage"]): a tuple (code, args...) of small
# ints; qcdtool turns them into sentences (qcdtool DAMAGE, FORMAT.md), the
# device does not carry them. The numbers are part of what a device shows.
_D_READBACK = const(1)  # (block, offset): a write read back wrong (worn flash?)
_D_WRITE = const(2)  # (block, offset, errno): a write failed
_D_ERASE = const(3)  # (block, errno): an erase failed (errno -1: it returned non-zero)
_D_UNREADABLE = const(4)  # (block, errno): a read failed
_D_HEADER_CRC = const(5)  # (block,): our magic, but the header fails its CRC
_D_FOREIGN = const(6)  # (block, version): another format version, left alone
_D_SAME_SEQ = const(7)  # (block, block, seq): two blocks with one seq
_D_MISSING = const(8)  # (seq,): a log block is missing, its records lost
_D_DAMAGED = const(9)  # (block, offset, records kept after it)
_D_TORN = const(10)  # (block, offset): torn or damaged bytes after the last record
# 11 to 16: what the records mean (qcd.store).

_EROFS = const(30)
_ENOSPC = const(28)
_EIO = const(5)


def u32(b, off):
    return struct.unpack_from("<I", b, off)[0]


def seed(seq):
    # Records' CRCs start from the CRC of their block's seq (FORMAT.md).
    return crc32(seq.to_bytes(4, "little"))


def errno(e):
    a = e.args
    return a[0] if a and isinstance(a[0], int) else -1


class Log:
    """The blocks of one partition `dev`, as a log of records (see the module
    header). readonly: never write. The counters and damage list are what
    qcd.store's status() shows."""

    def __init__(self, dev, readonly=False):
        self.dev = dev
        if dev.ioctl(_IOCTL_BLOCK_SIZE, 0) != BLOCK_SIZE:
            raise ValueError("the qcd store needs %d-byte blocks (esp32.Partition's default)" % BLOCK_SIZE)
        n = dev.ioctl(_IOCTL_BLOCK_COUNT, 0)
        if not MIN_BLOCKS <= n <= MAX_BLOCKS:
            raise ValueError("the qcd partition must have %d to %d blocks of 4 KiB, not %d" % (MIN_BLOCKS, MAX_BLOCKS, n))
        self.blocks = n
        self.readonly = readonly
        self.state = [S_BLANK] * n
        self.seq = [-1] * n  # header seq of each block, -1 if none
        self.erase_est = [-1] * n  # erase estimate from the header, -1 unknown
        self.used = [0] * n  # bytes of valid records (after the header)
        self.chain = []  # live blocks, oldest first
        self._max_seq = 0
        self._base = 0
        self.head = -1  # block appended to, -1: the next append opens one
        self.pos = 0
        self._head_seed = 0
        self.last_slot = 0  # offset / 16 of the record appended last
        self._win = bytearray(WINDOW)
        self._chk = bytearray(48)
        self._rb = None  # the mount's read window (_need)
        self._rbase = self._rend = 0
        self.restart = False  # the next open is this boot's first (see _open)
        self.damage = []
        self.readonly_reason = "opened read-only" if readonly else ""
        self.damage_count = self.writes = self.bytes_written = self.erases = 0
        self.compactions = self.write_errors = self.mount_read_bytes = 0

    def note(self, *what):
        # A damage report (status()["damage"]): (code, args...).
        self.damage_count += 1
        if len(self.damage) < _MAX_DAMAGE:
            self.damage.append(what)

    def writable(self):
        if self.readonly:
            raise OSError(_EROFS, "qcd store is read-only: " + self.readonly_reason)

    def order(self):
        # {block: its position in the log}: the log order of two records is
        # (order of their blocks, their offsets).
        o = {}
        for i in range(len(self.chain)):
            o[self.chain[i]] = i
        return o

    # -- appending -------------------------------------------------------------------

    def append(self, rec, owner, drop=None):
        # Append one record (unsealed); returns its block. The record is
        # acknowledged (this returns) only after it was read back intact.
        # drop: the Child SPI a DROP record removes; -1 is returned when the
        # block opening it needed compacted that entry away instead.
        ln = len(rec)
        for _ in range(self.blocks + 1):
            if self.head < 0 or self.pos + ln > BLOCK_SIZE:
                if self._open(owner, drop):
                    return -1
            blk = self.head
            pos = self.pos
            if self._put(blk, pos, rec, self._head_seed):
                self.last_slot = pos // CHUNK
                self.pos = pos + ln
                self.used[blk] = self.pos - HEADER_LEN
                return blk
            # It did not land: never write after it in this block.
            self.head = -1
        raise OSError(_EIO, "no block takes writes")

    def _put(self, blk, pos, rec, sd):
        # Seal, program and read back one record, or a block header (pos 0,
        # seed 0: its fcrc and crc sit at the same place from its end).
        # False if it did not land.
        ln = len(rec)
        end = pos + ln
        n = BLOCK_SIZE - end
        if n > WINDOW:
            n = WINDOW
        w = memoryview(self._win)[:n]
        try:
            # The forward CRC (of the bytes after the record, as they read
            # now) and the CRC (seeded with the block's seq) go last in it.
            if n:
                self.dev.readblocks(blk, w, end)
            struct.pack_into("<I", rec, ln - 8, crc32(w))
            struct.pack_into("<I", rec, ln - 4, crc32(memoryview(rec)[: ln - 4], sd))
            self.dev.writeblocks(blk, rec, pos)
            self.writes += 1
            self.bytes_written += ln
            self.dev.readblocks(blk, memoryview(self._chk)[:ln], pos)
            if self._chk[:ln] != rec:
                self.write_errors += 1
                self.note(_D_READBACK, blk, pos)
                return False
        except OSError as e:
            self.write_errors += 1
            self.note(_D_WRITE, blk, pos, errno(e))
            return False
        return True

    # -- opening a block, and compaction ------------------------------------------------

    def _open(self, owner, drop):
        # Open a new head block; True if it compacted away the latest record
        # of Child SPI `drop` (which was then not copied).
        self.writable()
        # A block without a readable header has an unknown erase count: on a
        # new partition it was never erased, after a torn erase it is about
        # the least worn of the rest (blocks are used in turn). Estimate it as
        # the lowest known count, and use such blocks first among equals.
        known = [e for e in self.erase_est if e >= 0]
        low = min(known) if known else 0
        for _ in range(self.blocks):
            cands = [b for b in range(self.blocks) if self.state[b] in (S_BLANK, S_STALE, S_ORPHAN)]
            if not cands:
                self.readonly_reason = "no usable free block (worn out?)"
                raise OSError(_ENOSPC, self.readonly_reason)
            h = -1
            hk = None
            for b in cands:
                e = self.erase_est[b]
                k = (e, 1) if e >= 0 else (low, 0)
                if hk is None or k < hk:
                    h = b
                    hk = k
            # Compaction: copy the oldest blocks' live records into h until
            # RESERVE free blocks remain (never the whole log if it won't fit).
            gc = []
            room = BLOCK_SIZE - HEADER_LEN
            free_after = len(cands) - 1
            if self.restart:
                # The first block a boot opens takes the whole log if it fits
                # (FORMAT.md, Reading, step 4): then no block written before
                # this boot is read again, so whatever a torn program or
                # erase left there (bits that read differently each time, a
                # header that checks once) cannot change what the log says.
                need = 0
                for b in self.chain:
                    need += owner._live_bytes(b)
                if need <= room:
                    gc = self.chain[:]
            while free_after + len(gc) < RESERVE and len(gc) < len(self.chain):
                need = owner._live_bytes(self.chain[len(gc)])
                if need > room:
                    break
                room -= need
                gc.append(self.chain[len(gc)])
            if self._max_seq >= U32:
                # seq never wraps (it orders the log): 2**32 block opens are
                # more erases than any flash survives, so only a crafted or
                # damaged partition gets here. Read-only until re-provisioned.
                self.readonly_reason = "block seq exhausted (0xFFFFFFFF): erase the partition, provision it again"
                raise OSError(_ENOSPC, self.readonly_reason)
            seq = self._max_seq + 1
            self._max_seq = seq
            erases = hk[0] + 1 if hk[0] < U32 else U32
            prev = self.seq[self.chain[-1]] if self.chain else 0
            base = self.seq[self.chain[len(gc)]] if len(gc) < len(self.chain) else seq
            recs, token, skipped = owner._copies(gc, drop)
            slots = self._fill(h, seq, recs, prev, base, erases)
            if slots is None:
                self.state[h] = S_BAD
                continue
            # Committed: the header is on flash and read back. What was in
            # the gc blocks now lives in h.
            for t in gc:
                self.state[t] = S_STALE
                self.chain.remove(t)
            owner._moved(gc, h, slots, token)
            self.state[h] = S_LIVE
            self.seq[h] = seq
            self.erase_est[h] = erases
            self.chain.append(h)
            self._base = base
            self.head = h
            self._head_seed = seed(seq)
            if gc:
                self.compactions += 1
            self.restart = False
            return skipped
        raise OSError(_ENOSPC, "no block could be opened")

    def _fill(self, h, seq, recs, prev, base, erases):
        # Erase h, write recs ((record, Child SPI or None), unsealed) after
        # its header, then the header. Returns {Child SPI: its new slot}, or
        # None if h failed (nothing changed, the old blocks stay live).
        try:
            r = self.dev.ioctl(_IOCTL_BLOCK_ERASE, h)
        except OSError as e:
            self.note(_D_ERASE, h, errno(e))
            self.write_errors += 1
            return None
        self.erases += 1
        if r:
            self.note(_D_ERASE, h, -1)
            return None
        self.erase_est[h] = -1  # its old header is gone
        self.seq[h] = -1
        sd = seed(seq)
        slots = {}
        pos = HEADER_LEN
        for rec, spi in recs:
            if not self._put(h, pos, rec, sd):
                return None
            if spi is not None:
                slots[spi] = pos // CHUNK
            pos += len(rec)
        hdr = bytearray(HEADER_LEN)
        hdr[0:4] = _MAGIC
        struct.pack_into("<BBHIIII", hdr, 4, VERSION, self.blocks, 0, seq, prev, base, erases)
        if not self._put(h, 0, hdr, 0):
            return None
        self.pos = pos
        self.used[h] = pos - HEADER_LEN
        return slots

    # -- mount ---------------------------------------------------------------------------

    def _read(self, blk, buf, off):
        self.dev.readblocks(blk, buf, off)
        self.mount_read_bytes += len(buf)

    def mount(self, owner):
        # Read every header, find the chain, and replay the live blocks
        # oldest first, one read each (FORMAT.md, Reading, steps 1 and 2).
        n = self.blocks
        hdr = bytearray(HEADER_LEN)
        prev = [0] * n
        base = [0] * n
        fcrc = [0] * n
        seqs = self.seq  # stays -1 for a block without a valid version-1 header
        for b in range(n):
            try:
                self._read(b, hdr, 0)
            except OSError as e:
                self.note(_D_UNREADABLE, b, errno(e))
                self.state[b] = S_BAD
                continue
            if hdr[0:4] != _MAGIC:
                continue  # blank: erased or never used; nothing to trust
            if crc32(memoryview(hdr)[:28]) != u32(hdr, 28):
                # Ours, but not whole: an erase or an open cut short (both
                # harmless), or a damaged block whose records are lost.
                self.note(_D_HEADER_CRC, b)
                continue
            if hdr[4] != VERSION:
                self.state[b] = S_FOREIGN
                self.note(_D_FOREIGN, b, hdr[4])
                continue
            seqs[b], prev[b], base[b], self.erase_est[b], fcrc[b] = struct.unpack_from("<IIIII", hdr, 8)
            if seqs[b] > self._max_seq:
                self._max_seq = seqs[b]
        # The newest header names the log: its base, and a chain of prev links.
        newest = -1
        by_seq = {}
        for b in range(n):
            s = seqs[b]
            if s >= 0:
                if newest < 0 or s > seqs[newest]:
                    newest = b
                if s in by_seq:
                    self.note(_D_SAME_SEQ, by_seq[s], b, s)
                else:
                    by_seq[s] = b
        if newest >= 0:
            self._base = base[newest]
            chain = []
            cur = newest
            while cur >= 0:
                chain.append(cur)
                p = prev[cur]
                if p < self._base or p >= seqs[cur]:
                    break
                nxt = by_seq.get(p, -1)
                if nxt < 0:
                    self.note(_D_MISSING, p)
                    for s in by_seq:
                        if self._base <= s < p and (nxt < 0 or s > seqs[nxt]):
                            nxt = by_seq[s]
                cur = nxt
            chain.reverse()
            self.chain = chain
            for b in range(n):
                if seqs[b] >= 0:
                    self.state[b] = S_LIVE if b in chain else S_STALE if seqs[b] < self._base else S_ORPHAN
        # Replay the log, oldest block first, each live block read front to
        # back once, in pieces (_need): a board's heap need not have a
        # block's 4 KiB in one piece.
        self._rb = bytearray(_SCAN)
        for b in self.chain:
            self.used[b] = self._scan(b, fcrc[b], owner) - HEADER_LEN
        self._rb = None
        # No block found at mount is ever written again before it is erased
        # (FORMAT.md, Reading, step 4): the first write of this boot opens a
        # block. The bytes after the newest block's last record may be a
        # torn program that happens to read as erased this once, or crafted
        # bytes resealed to match a forward CRC: never program over them.
        self.restart = not self.readonly

    def _need(self, b, p, k):
        # Bytes [p, p+k) of block b (k <= 64, the longest record) in self._rb: returns
        # their index there. The scan only moves forward, so the bytes
        # before p are dropped and each byte of the block is read once: the
        # piece kept is moved to the front and the rest read after it.
        rb = self._rb
        if p + k > self._rend:
            keep = self._rend - p
            if keep > 0:
                rb[0:keep] = rb[p - self._rbase : p - self._rbase + keep]
            else:
                keep = 0
            n = _SCAN - keep
            if n > BLOCK_SIZE - self._rend:
                n = BLOCK_SIZE - self._rend
            self._rbase = p
            self._read(b, memoryview(rb)[keep : keep + n], self._rend)
            self._rend += n
        return p - self._rbase

    def _scan(self, b, hfcrc, owner):
        # Replay block b's records; returns the end of its valid records.
        # A read that fails ends the block there (damage), keeping what was
        # read before it.
        sd = seed(self.seq[b])
        self._rbase = self._rend = HEADER_LEN
        pos = HEADER_LEN
        try:
            last = hfcrc
            while pos + CHUNK <= BLOCK_SIZE:
                ln = self._record(pos, sd, b, owner)
                if not ln:
                    break
                last = u32(self._rb, pos - self._rbase + ln - 8)
                pos += ln
            end = pos
            n = BLOCK_SIZE - end
            if n > WINDOW:
                n = WINDOW
            i = self._need(b, end, n)
            if crc32(memoryview(self._rb)[i : i + n]) == last:
                return end
            # Something was written after the last valid record and is not a
            # valid record: a write cut short, or a damaged record. Look for
            # valid records after it (a damaged record in the middle of a block
            # must not take the later ones with it).
            p = end + CHUNK
            found = 0
            while p + CHUNK <= BLOCK_SIZE:
                ln = self._record(p, sd, b, owner)
                if ln:
                    found += 1
                    p += ln
                else:
                    p += CHUNK
        except OSError as e:
            self.note(_D_UNREADABLE, b, errno(e))
            return pos
        if found:
            self.note(_D_DAMAGED, b, end, found)
        else:
            self.note(_D_TORN, b, end)
        return end

    def _record(self, pos, sd, b, owner):
        # The record at pos in block b: 0 if there is no valid record there;
        # else its length, after the owner applied it.
        i = self._need(b, pos, CHUNK)
        t = self._rb[i]
        ln = ((t >> 6) + 1) * 16
        typ = t & 0x3F
        if typ == 0 or typ == 0x3F or pos + ln > BLOCK_SIZE:
            return 0
        i = self._need(b, pos, ln)
        mv = memoryview(self._rb)
        if crc32(mv[i : i + ln - 4], sd) != u32(self._rb, i + ln - 4):
            return 0
        owner._apply(mv[i : i + ln], pos, typ, ln, b)
        return ln

    # -- diagnostics ------------------------------------------------------------------

    def block_status(self):
        blocks = {}
        for b in range(self.blocks):
            st = self.state[b]
            s = st + (" (head)" if b == self.head else "")
            if self.seq[b] >= 0:
                s += ", seq %d" % self.seq[b]
            er = self.erase_est[b]
            s += ", erases ~%s" % (er if er >= 0 else "?")
            if st == S_LIVE:
                s += ", %d of %d bytes used" % (self.used[b], BLOCK_SIZE - HEADER_LEN)
            blocks[b] = s
        return blocks

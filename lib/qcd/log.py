# qcd.log: the record log under qcd.store (docs/FORMAT.md: Blocks, Records,
# Writing, Reading). It knows blocks, block headers, the record frame (tag,
# CRC seeded with the block's seq, forward CRC), appending, compaction and
# the mount scan; not what the records mean. That is qcd.records' (secrets,
# the Child SPI map, the boot counter), which the log calls back with the
# store `owner` (qcd.records' header lists the calls).
#
# Functions over a log's state `lg` (qcd.store.Log: blocks, counters,
# damage), which this module does not hold: qcd.store loads it with
# qcd.records to mount, write or report, and the firmware app's store drops
# both again afterwards.
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
_IOCTL_BLOCK_ERASE = const(6)  # (BLOCK_COUNT and BLOCK_SIZE: qcd.store.Log)

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


def _records():
    # qcd.records, what the records mean (it imports this module)
    from qcd import records

    return records


def note(lg, *what):
    # A damage report (status()["damage"]): (code, args...).
    lg.damage_count += 1
    if len(lg.damage) < _MAX_DAMAGE:
        lg.damage.append(what)


def writable(lg):
    if lg.readonly:
        raise OSError(_EROFS, "qcd store is read-only: " + lg.readonly_reason)


def order(lg):
    # {block: its position in the log}: the log order of two records is
    # (order of their blocks, their offsets).
    o = {}
    for i in range(len(lg.chain)):
        o[lg.chain[i]] = i
    return o


def append(lg, rec, owner, drop=None):
    # Append one record (unsealed); returns its block. The record is
    # acknowledged (this returns) only after it was read back intact.
    # drop: the Child SPI a DROP record removes; -1 is returned when the
    # block opening it needed compacted that entry away instead.
    ln = len(rec)
    for _ in range(lg.blocks + 1):
        if lg.head < 0 or lg.pos + ln > BLOCK_SIZE:
            if _open(lg, owner, drop):
                return -1
        blk = lg.head
        pos = lg.pos
        if _put(lg, blk, pos, rec, lg._head_seed):
            lg.last_slot = pos // CHUNK
            lg.pos = pos + ln
            lg.used[blk] = lg.pos - HEADER_LEN
            return blk
        # It did not land: never write after it in this block.
        lg.head = -1
    raise OSError(_EIO, "no block takes writes")


def _put(lg, blk, pos, rec, sd):
    # Seal, program and read back one record, or a block header (pos 0,
    # seed 0: its fcrc and crc sit at the same place from its end).
    # False if it did not land.
    ln = len(rec)
    end = pos + ln
    n = BLOCK_SIZE - end
    if n > WINDOW:
        n = WINDOW
    w = memoryview(lg._win)[:n]
    try:
        # The forward CRC (of the bytes after the record, as they read
        # now) and the CRC (seeded with the block's seq) go last in it.
        if n:
            lg.dev.readblocks(blk, w, end)
        struct.pack_into("<I", rec, ln - 8, crc32(w))
        struct.pack_into("<I", rec, ln - 4, crc32(memoryview(rec)[: ln - 4], sd))
        lg.dev.writeblocks(blk, rec, pos)
        lg.writes += 1
        lg.bytes_written += ln
        lg.dev.readblocks(blk, memoryview(lg._chk)[:ln], pos)
        if lg._chk[:ln] != rec:
            lg.write_errors += 1
            note(lg, _D_READBACK, blk, pos)
            return False
    except OSError as e:
        lg.write_errors += 1
        note(lg, _D_WRITE, blk, pos, errno(e))
        return False
    return True


def _open(lg, owner, drop):
    # Open a new head block; True if it compacted away the latest record
    # of Child SPI `drop` (which was then not copied).
    writable(lg)
    # A block without a readable header has an unknown erase count: on a
    # new partition it was never erased, after a torn erase it is about
    # the least worn of the rest (blocks are used in turn). Estimate it as
    # the lowest known count, and use such blocks first among equals.
    known = [e for e in lg.erase_est if e >= 0]
    low = min(known) if known else 0
    for _ in range(lg.blocks):
        cands = [b for b in range(lg.blocks) if lg.state[b] in (S_BLANK, S_STALE, S_ORPHAN)]
        if not cands:
            lg.readonly_reason = "no usable free block (worn out?)"
            raise OSError(_ENOSPC, lg.readonly_reason)
        h = -1
        hk = None
        for b in cands:
            e = lg.erase_est[b]
            k = (e, 1) if e >= 0 else (low, 0)
            if hk is None or k < hk:
                h = b
                hk = k
        # Compaction: copy the oldest blocks' live records into h until
        # RESERVE free blocks remain (never the whole log if it won't fit).
        gc = []
        room = BLOCK_SIZE - HEADER_LEN
        free_after = len(cands) - 1
        if lg.restart:
            # The first block a boot opens takes the whole log if it fits
            # (FORMAT.md, Reading, step 4): then no block written before
            # this boot is read again, so whatever a torn program or
            # erase left there (bits that read differently each time, a
            # header that checks once) cannot change what the log says.
            need = 0
            for b in lg.chain:
                need += _records()._live_bytes(owner, b)
            if need <= room:
                gc = lg.chain[:]
        while free_after + len(gc) < RESERVE and len(gc) < len(lg.chain):
            need = _records()._live_bytes(owner, lg.chain[len(gc)])
            if need > room:
                break
            room -= need
            gc.append(lg.chain[len(gc)])
        if lg._max_seq >= U32:
            # seq never wraps (it orders the log): 2**32 block opens are
            # more erases than any flash survives, so only a crafted or
            # damaged partition gets here. Read-only until re-provisioned.
            lg.readonly_reason = "block seq exhausted (0xFFFFFFFF): erase the partition, provision it again"
            raise OSError(_ENOSPC, lg.readonly_reason)
        seq = lg._max_seq + 1
        lg._max_seq = seq
        erases = hk[0] + 1 if hk[0] < U32 else U32
        prev = lg.seq[lg.chain[-1]] if lg.chain else 0
        base = lg.seq[lg.chain[len(gc)]] if len(gc) < len(lg.chain) else seq
        recs, token, skipped = _records()._copies(owner, gc, drop)
        slots = _fill(lg, h, seq, recs, prev, base, erases)
        if slots is None:
            lg.state[h] = S_BAD
            continue
        # Committed: the header is on flash and read back. What was in
        # the gc blocks now lives in h.
        for t in gc:
            lg.state[t] = S_STALE
            lg.chain.remove(t)
        _records()._moved(owner, gc, h, slots, token)
        lg.state[h] = S_LIVE
        lg.seq[h] = seq
        lg.erase_est[h] = erases
        lg.chain.append(h)
        lg._base = base
        lg.head = h
        lg._head_seed = seed(seq)
        if gc:
            lg.compactions += 1
        lg.restart = False
        return skipped
    raise OSError(_ENOSPC, "no block could be opened")


def _fill(lg, h, seq, recs, prev, base, erases):
    # Erase h, write recs ((record, Child SPI or None), unsealed) after
    # its header, then the header. Returns {Child SPI: its new slot}, or
    # None if h failed (nothing changed, the old blocks stay live).
    try:
        r = lg.dev.ioctl(_IOCTL_BLOCK_ERASE, h)
    except OSError as e:
        note(lg, _D_ERASE, h, errno(e))
        lg.write_errors += 1
        return None
    lg.erases += 1
    if r:
        note(lg, _D_ERASE, h, -1)
        return None
    lg.erase_est[h] = -1  # its old header is gone
    lg.seq[h] = -1
    sd = seed(seq)
    slots = {}
    pos = HEADER_LEN
    for rec, spi in recs:
        if not _put(lg, h, pos, rec, sd):
            return None
        if spi is not None:
            slots[spi] = pos // CHUNK
        pos += len(rec)
    hdr = bytearray(HEADER_LEN)
    hdr[0:4] = _MAGIC
    struct.pack_into("<BBHIIII", hdr, 4, VERSION, lg.blocks, 0, seq, prev, base, erases)
    if not _put(lg, h, 0, hdr, 0):
        return None
    lg.pos = pos
    lg.used[h] = pos - HEADER_LEN
    return slots


def _read(lg, blk, buf, off):
    lg.dev.readblocks(blk, buf, off)
    lg.mount_read_bytes += len(buf)


def mount(lg, owner):
    # Read every header, find the chain, and replay the live blocks
    # oldest first, one read each (FORMAT.md, Reading, steps 1 and 2).
    n = lg.blocks
    hdr = bytearray(HEADER_LEN)
    prev = [0] * n
    base = [0] * n
    fcrc = [0] * n
    seqs = lg.seq  # stays -1 for a block without a valid version-1 header
    for b in range(n):
        try:
            _read(lg, b, hdr, 0)
        except OSError as e:
            note(lg, _D_UNREADABLE, b, errno(e))
            lg.state[b] = S_BAD
            continue
        if hdr[0:4] != _MAGIC:
            continue  # blank: erased or never used; nothing to trust
        if crc32(memoryview(hdr)[:28]) != u32(hdr, 28):
            # Ours, but not whole: an erase or an open cut short (both
            # harmless), or a damaged block whose records are lost.
            note(lg, _D_HEADER_CRC, b)
            continue
        if hdr[4] != VERSION:
            lg.state[b] = S_FOREIGN
            note(lg, _D_FOREIGN, b, hdr[4])
            continue
        seqs[b], prev[b], base[b], lg.erase_est[b], fcrc[b] = struct.unpack_from("<IIIII", hdr, 8)
        if seqs[b] > lg._max_seq:
            lg._max_seq = seqs[b]
    # The newest header names the log: its base, and a chain of prev links.
    newest = -1
    by_seq = {}
    for b in range(n):
        s = seqs[b]
        if s >= 0:
            if newest < 0 or s > seqs[newest]:
                newest = b
            if s in by_seq:
                note(lg, _D_SAME_SEQ, by_seq[s], b, s)
            else:
                by_seq[s] = b
    if newest >= 0:
        lg._base = base[newest]
        chain = []
        cur = newest
        while cur >= 0:
            chain.append(cur)
            p = prev[cur]
            if p < lg._base or p >= seqs[cur]:
                break
            nxt = by_seq.get(p, -1)
            if nxt < 0:
                note(lg, _D_MISSING, p)
                for s in by_seq:
                    if lg._base <= s < p and (nxt < 0 or s > seqs[nxt]):
                        nxt = by_seq[s]
            cur = nxt
        chain.reverse()
        lg.chain = chain
        for b in range(n):
            if seqs[b] >= 0:
                lg.state[b] = S_LIVE if b in chain else S_STALE if seqs[b] < lg._base else S_ORPHAN
    # Replay the log, oldest block first, each live block read front to
    # back once, in pieces (_need): a board's heap need not have a
    # block's 4 KiB in one piece.
    lg._rb = bytearray(_SCAN)
    for b in lg.chain:
        lg.used[b] = _scan(lg, b, fcrc[b], owner) - HEADER_LEN
    lg._rb = None
    # No block found at mount is ever written again before it is erased
    # (FORMAT.md, Reading, step 4): the first write of this boot opens a
    # block. The bytes after the newest block's last record may be a
    # torn program that happens to read as erased this once, or crafted
    # bytes resealed to match a forward CRC: never program over them.
    lg.restart = not lg.readonly


def _need(lg, b, p, k):
    # Bytes [p, p+k) of block b (k <= 64, the longest record) in lg._rb: returns
    # their index there. The scan only moves forward, so the bytes
    # before p are dropped and each byte of the block is read once: the
    # piece kept is moved to the front and the rest read after it.
    rb = lg._rb
    if p + k > lg._rend:
        keep = lg._rend - p
        if keep > 0:
            rb[0:keep] = rb[p - lg._rbase : p - lg._rbase + keep]
        else:
            keep = 0
        n = _SCAN - keep
        if n > BLOCK_SIZE - lg._rend:
            n = BLOCK_SIZE - lg._rend
        lg._rbase = p
        _read(lg, b, memoryview(rb)[keep : keep + n], lg._rend)
        lg._rend += n
    return p - lg._rbase


def _scan(lg, b, hfcrc, owner):
    # Replay block b's records; returns the end of its valid records.
    # A read that fails ends the block there (damage), keeping what was
    # read before it.
    sd = seed(lg.seq[b])
    lg._rbase = lg._rend = HEADER_LEN
    pos = HEADER_LEN
    try:
        last = hfcrc
        while pos + CHUNK <= BLOCK_SIZE:
            ln = _record(lg, pos, sd, b, owner)
            if not ln:
                break
            last = u32(lg._rb, pos - lg._rbase + ln - 8)
            pos += ln
        end = pos
        n = BLOCK_SIZE - end
        if n > WINDOW:
            n = WINDOW
        i = _need(lg, b, end, n)
        if crc32(memoryview(lg._rb)[i : i + n]) == last:
            return end
        # Something was written after the last valid record and is not a
        # valid record: a write cut short, or a damaged record. Look for
        # valid records after it (a damaged record in the middle of a block
        # must not take the later ones with it).
        p = end + CHUNK
        found = 0
        while p + CHUNK <= BLOCK_SIZE:
            ln = _record(lg, p, sd, b, owner)
            if ln:
                found += 1
                p += ln
            else:
                p += CHUNK
    except OSError as e:
        note(lg, _D_UNREADABLE, b, errno(e))
        return pos
    if found:
        note(lg, _D_DAMAGED, b, end, found)
    else:
        note(lg, _D_TORN, b, end)
    return end


def _record(lg, pos, sd, b, owner):
    # The record at pos in block b: 0 if there is no valid record there;
    # else its length, after the owner applied it.
    i = _need(lg, b, pos, CHUNK)
    t = lg._rb[i]
    ln = ((t >> 6) + 1) * 16
    typ = t & 0x3F
    if typ == 0 or typ == 0x3F or pos + ln > BLOCK_SIZE:
        return 0
    i = _need(lg, b, pos, ln)
    mv = memoryview(lg._rb)
    if crc32(mv[i : i + ln - 4], sd) != u32(lg._rb, i + ln - 4):
        return 0
    _records()._apply(owner, mv[i : i + ln], pos, typ, ln, b)
    return ln


def block_status(lg):
    blocks = {}
    for b in range(lg.blocks):
        st = lg.state[b]
        s = st + (" (head)" if b == lg.head else "")
        if lg.seq[b] >= 0:
            s += ", seq %d" % lg.seq[b]
        er = lg.erase_est[b]
        s += ", erases ~%s" % (er if er >= 0 else "?")
        if st == S_LIVE:
            s += ", %d of %d bytes used" % (lg.used[b], BLOCK_SIZE - HEADER_LEN)
        blocks[b] = s
    return blocks

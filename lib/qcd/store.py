# qcd.store: the `qcd` flash partition, the token maker's non-volatile storage
# (RFC 6290 §1.2: the secret must survive restarts; §8.2: the Child SPI ->
# IKE SA map, "updated on every Child SA create, rekey and delete").
#
# A key source for the hook (the interface of qcd.keys) that lives in a raw
# data partition reached only through the esp32.Partition block protocol
# (readblocks/writeblocks with offset, ioctl 4/5/6), and obeys what real and
# encrypted flash demand (design.md principles 3 and 4):
#   - erase is per 4096-byte block; a program only clears bits;
#   - on a partition flagged `encrypted`, writes are 16-byte aligned in offset
#     and length, each 16-byte chunk is written at most once per erase, and
#     erased flash reads back as random bytes: so nothing here looks for 0xFF
#     or commits by clearing bits in place. Every record carries its own CRC.
#
# The format is docs/FORMAT.md (every field, block state and recovery rule);
# keep the two in step. In short: blocks form a log ordered by a sequence
# number in each block's header; records are appended, 16-byte aligned and
# written once, each with a CRC-32 and a "forward CRC" of the bytes that
# follow it as they read before it was written (littlefs's fcrc idea): at
# mount, if the bytes after the last valid record of a block no longer match
# that CRC, a write was cut short there and the block is never appended to
# again. When a block is full the store opens the free block with the fewest
# erases; if fewer than RESERVE free blocks would remain, the oldest log
# block's live records are copied into the new block before its header is
# written, and the header (written last, so an interrupted compaction is
# simply rolled back) declares the old block dead. Erases therefore go round
# all blocks, and live data moves with them.
#
# RAM is bounded by the caps below, not by the number of writes: the map
# (Child SPI -> IKE SA id), the IKE SA table, at most MAX_GENERATIONS secrets,
# and a few per-block integers. Mount reads each block at most once.

import binascii
import struct

from qcd.tokens import SECRET_LEN, fingerprint

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


BLOCK_SIZE = const(4096)
HEADER_LEN = const(32)
CHUNK = const(16)  # flash-encryption block: every record is a multiple of it
WINDOW = const(48)  # forward-CRC window: the longest record, so a torn write lies inside it
MAGIC = b"QCDP"
VERSION = const(1)
MIN_BLOCKS = const(4)
MAX_BLOCKS = const(255)
# Free blocks kept in hand besides the one being opened: one to open next,
# and one more so that a block whose erase fails does not stop the store.
RESERVE = const(2)
MAX_GENERATIONS = const(4)
# The Child SPI map cap. A device holds few Child SAs (one IKE SA with a
# handful of Child SAs, twice that during rekeys); 64 leaves room. It is
# lowered to what the partition can hold with compaction headroom (half the
# log capacity at the largest record size), e.g. 42 on a 4-block partition.
# At the cap, a new entry evicts the one written longest ago (counted in
# status()["evicted"]): after a reboot that stale Child SA's ESP gets plain
# INVALID_SPI, and the peer's liveness check brings the IKE-level QCD answer
# (RFC 6290 §4.5) one round trip later, so nothing breaks, it is only slower.
DEFAULT_MAX_CHILDREN = const(64)
_MAX_DAMAGE = const(16)  # damage lines kept for status(); more are counted

# Record types. Tag byte: bits 7-6 = length / 16 - 1, bits 5-0 = type.
T_BOOT = const(0x01)  # 16: boot counter
T_SECRET = const(0x02)  # 48: secret generation
T_RETIRE = const(0x03)  # 16: a generation retired
T_CHILD = const(0x04)  # 16: Child SPI -> known IKE SA id
T_DROP = const(0x05)  # 16: Child SPI removed
T_CHILD_NEW = const(0x06)  # 48: IKE SA id defined, and a Child SPI on it
_LENGTHS = {T_BOOT: 16, T_SECRET: 48, T_RETIRE: 16, T_CHILD: 16, T_DROP: 16, T_CHILD_NEW: 48}
_TYPE_NAMES = {T_BOOT: "boot", T_SECRET: "secret", T_RETIRE: "retire", T_CHILD: "child", T_DROP: "drop", T_CHILD_NEW: "child+ike"}
F_INITIATOR = const(0x01)
F_IPV6 = const(0x02)

# Block states (status() and qcdtool inspect).
S_BLANK = "blank"  # no valid header: erased, never used, or damaged
S_LIVE = "live"  # in the log
S_STALE = "stale"  # a valid header older than the log's base: free, awaiting reuse
S_ORPHAN = "orphan"  # valid header not on the log's chain (an interrupted open): free
S_FOREIGN = "foreign"  # our magic, another format version: left alone, never written
S_BAD = "bad"  # an erase or a verified write failed this boot: not used until reboot

_EROFS = 30
_ENOSPC = 28
_EIO = 5


def _u32(b, off):
    return struct.unpack_from("<I", b, off)[0]


def _crc(data, value=0):
    return binascii.crc32(data, value) & 0xFFFFFFFF


def _tag(t):
    return ((_LENGTHS[t] // 16 - 1) << 6) | t


def _entry(d):
    # IKE SA definition bytes -> the keys.py map entry
    flags = d[0]
    ip = d[17:33] if flags & F_IPV6 else d[17:21]
    return (d[1:9], d[9:17], bool(flags & F_INITIATOR), ip)


class Store:
    """The QCD partition: secrets, the RFC 6290 §8.2 Child SPI map, a boot counter.

    dev            an esp32.Partition (or tools/flashemu.FlashEmu): 4096-byte
                   blocks, MIN_BLOCKS..MAX_BLOCKS of them
    rng            callable n -> n random bytes for a new secret; os.urandom
                   where it exists (the WebAssembly port has none: inject one)
    max_children   cap of the Child SPI map (see DEFAULT_MAX_CHILDREN)
    initial_secret the secret to create if the partition holds none
                   (qcdtool provision), instead of one from rng
    count_boot     write a boot record (False for tools that only look)
    readonly       never write (qcdtool inspect); nothing is created then

    Mounting happens here: the partition is read once, the log replayed, an
    interrupted compaction rolled back, damage skipped and listed in
    status(); a blank or unreadable partition comes up with a fresh secret.
    """

    def __init__(self, dev, rng=None, max_children=DEFAULT_MAX_CHILDREN, initial_secret=None, count_boot=True, readonly=False):
        self.dev = dev
        if dev.ioctl(5, 0) != BLOCK_SIZE:
            raise ValueError("the qcd store needs %d-byte blocks (esp32.Partition's default)" % BLOCK_SIZE)
        n = dev.ioctl(4, 0)
        if not MIN_BLOCKS <= n <= MAX_BLOCKS:
            raise ValueError("the qcd partition must have %d to %d blocks of 4 KiB, not %d" % (MIN_BLOCKS, MAX_BLOCKS, n))
        self.blocks = n
        self._rng = rng
        self.readonly = bool(readonly)
        fit = (n - 1 - RESERVE) * (BLOCK_SIZE - HEADER_LEN) // 2 // 48
        self.max_children = max(1, min(int(max_children), fit))
        # RAM state
        self._children = {}  # spi -> ike_id << 16 | block << 8 | offset / 16 of its latest record
        self._ike = {}  # ike_id -> [definition (33 bytes) or None, children referencing it, block]
        self._ike_by_def = {}  # definition -> ike_id
        self._secrets = {}  # generation -> [secret, block]
        self._secret_list = []  # secrets, newest generation first (keys.py order)
        self._boot = [0, -1]  # [count, block]
        self.boot_count = 0
        self._max_gen = 0
        self._state = [S_BLANK] * n
        self._seq = [-1] * n  # header seq of each block, -1 if none
        self._erase_est = [-1] * n  # erase estimate from the header, -1 unknown
        self._used = [0] * n  # bytes of valid records (after the header)
        self._chain = []  # live blocks, oldest first
        self._max_seq = 0
        self._base = 0
        self._head = -1  # block appended to, -1: the next append opens one
        self._pos = 0
        self._head_seed = 0
        self._last_slot = 0
        self._win = bytearray(WINDOW)
        self._chk = bytearray(48)
        # diagnostics
        self.damage = []
        self.damage_count = 0
        self.fresh_secret = ""  # why this boot created a secret ("" if it did not)
        self.readonly_reason = "opened read-only" if readonly else ""
        self.evicted = 0
        self.writes = 0
        self.bytes_written = 0
        self.erases = 0
        self.compactions = 0
        self.write_errors = 0
        self.mount_read_bytes = 0
        self._mount(initial_secret, count_boot)

    # -- the keys.py interface ------------------------------------------------------

    def secrets(self):
        return self._secret_list

    def child_get(self, spi):
        v = self._children.get(spi)
        if v is None:
            return None
        return _entry(self._ike[v >> 16][0])

    def child_put(self, spi, spi_i, spi_r, initiator, peer_ip):
        """Persist Child SPI -> (parent IKE SA, our role, peer address).
        Nothing is written when the entry is already there."""
        if not isinstance(spi, int) or not 0 <= spi <= 0xFFFFFFFF:
            raise ValueError("a Child SPI is a 32-bit unsigned int")
        if len(spi_i) != 8 or len(spi_r) != 8:
            raise ValueError("IKE SPIs are 8 bytes")
        if len(peer_ip) != 4 and len(peer_ip) != 16:
            raise ValueError("a peer address is 4 or 16 bytes")
        flags = (F_INITIATOR if initiator else 0) | (F_IPV6 if len(peer_ip) == 16 else 0)
        d = bytes([flags]) + bytes(spi_i) + bytes(spi_r) + bytes(peer_ip) + bytes(16 - len(peer_ip))
        cur = self._children.get(spi)
        ike = self._ike_by_def.get(d)
        if cur is not None and ike is not None and cur >> 16 == ike:
            return
        self._writable()
        if ike is None:
            ike = 0
            while ike in self._ike:
                ike += 1
            rec = self._rec(T_CHILD_NEW)
            rec[1] = flags
            struct.pack_into("<HI", rec, 2, ike, spi)
            rec[8:40] = d[1:33]
            blk = self._append(rec)
            self._ike[ike] = [d, 0, blk]
            self._ike_by_def[d] = ike
        else:
            rec = self._rec(T_CHILD)
            struct.pack_into("<HI", rec, 2, ike, spi)
            blk = self._append(rec)
        self._child_set(spi, ike, blk, self._last_slot)
        self._prune_ike()
        # At the cap, the entry written longest ago goes, after the new one
        # is on flash: a cut in between leaves one entry too many, and the
        # next mount evicts the same one (the oldest record) to finish it.
        if cur is None:
            try:
                while len(self._children) > self.max_children:
                    self._evict()
            except OSError:
                pass  # the put itself is on flash; the next eviction or mount catches up

    def child_drop(self, spi):
        if spi not in self._children:
            return
        self._writable()
        rec = self._rec(T_DROP)
        struct.pack_into("<I", rec, 4, spi)
        self._append(rec)
        self._child_del(spi)
        self._prune_ike()

    def children(self):
        """(spi, entry) pairs of the Child SPI map (a snapshot list)."""
        return [(spi, self.child_get(spi)) for spi in self._children]

    def child_count(self):
        return len(self._children)

    # -- secrets ----------------------------------------------------------------------

    def rollover(self, secret=None):
        """Add a new current secret (from the RNG unless given); older ones
        stay until retired (RFC 6290 §5: tokens of SAs made with them must
        stay valid). Returns its fingerprint."""
        if secret is None:
            secret = self._random_secret()
        else:
            secret = _check_secret(secret)
        for g in self._secrets:
            if self._secrets[g][0] == secret:
                raise ValueError("that secret is already held (%s)" % fingerprint(secret))
        if len(self._secrets) >= MAX_GENERATIONS:
            raise ValueError("the store holds %d secrets, its maximum: retire one first" % MAX_GENERATIONS)
        self._writable()
        self._add_secret(secret)
        return fingerprint(secret)

    def retire(self, fp):
        """Forget the secret with fingerprint `fp` (never the current one)."""
        cur = max(self._secrets) if self._secrets else -1
        for g in self._secrets:
            if g != cur and fingerprint(self._secrets[g][0]) == fp:
                self._writable()
                rec = self._rec(T_RETIRE)
                struct.pack_into("<I", rec, 4, g)
                self._append(rec)
                del self._secrets[g]
                self._sort_secrets()
                return True
        return False

    # -- diagnostics ------------------------------------------------------------------

    def status(self):
        """What the partition holds and what happened to it; never a secret."""
        gens = sorted(self._secrets, reverse=True)
        st = {
            "format": VERSION,
            "blocks": self.blocks,
            "generations": ["gen %d %s%s" % (g, fingerprint(self._secrets[g][0]), " (current)" if i == 0 else "") for i, g in enumerate(gens)],
            "secrets": [fingerprint(s) for s in self._secret_list],
            "boot_count": self.boot_count,
            "child_map": len(self._children),
            "child_cap": self.max_children,
            "ike_sas": len(self._ike),
            "evicted": self.evicted,
            "fresh_secret": self.fresh_secret or "no",
            "damage": self.damage + (["... and %d more" % (self.damage_count - len(self.damage))] if self.damage_count > len(self.damage) else []),
            "damage_count": self.damage_count,
            "block_state": self._block_lines(),
            "head": ("block %d offset %d" % (self._head, self._pos)) if self._head >= 0 else "none (the next write opens a block)",
            "mount_read_bytes": self.mount_read_bytes,
            "writes": self.writes,
            "bytes_written": self.bytes_written,
            "erases": self.erases,
            "compactions": self.compactions,
            "write_errors": self.write_errors,
            "readonly": self.readonly_reason or "no",
        }
        return st

    def block_info(self, b):
        """(state, seq or -1, erase estimate or -1, bytes used) of block b."""
        return (self._state[b], self._seq[b], self._erase_est[b], self._used[b])

    def _block_lines(self):
        d = {}
        for b in range(self.blocks):
            d[b] = self._block_line(b)
        return d

    def _block_line(self, b):
        st, seq, er, used = self.block_info(b)
        s = st + (" (head)" if b == self._head else "")
        if seq >= 0:
            s += ", seq %d" % seq
        s += ", erases ~%s" % (er if er >= 0 else "?")
        if st == S_LIVE:
            s += ", %d of %d bytes used" % (used, BLOCK_SIZE - HEADER_LEN)
        return s

    def __repr__(self):
        return "<qcd.store %d blocks, secrets=%s, children=%d, boot %d>" % (
            self.blocks,
            ",".join(fingerprint(s) for s in self._secret_list) or "-",
            len(self._children),
            self.boot_count,
        )

    __str__ = __repr__

    # -- RAM bookkeeping ---------------------------------------------------------------

    def _child_set(self, spi, ike, blk, slot):
        old = self._children.get(spi)
        if old is not None:
            self._ike[old >> 16][1] -= 1
        self._children[spi] = (ike << 16) | (blk << 8) | slot
        e = self._ike.get(ike)
        if e is None:
            e = [None, 0, -1]
            self._ike[ike] = e
        e[1] += 1

    def _child_del(self, spi):
        old = self._children.pop(spi, None)
        if old is not None:
            self._ike[old >> 16][1] -= 1

    def _prune_ike(self):
        # An IKE SA with no Child SA left is forgotten; its id may be reused
        # (a later CHILD_NEW record redefines it).
        dead = [i for i in self._ike if self._ike[i][1] <= 0]
        for i in dead:
            d = self._ike.pop(i)[0]
            if d is not None and self._ike_by_def.get(d) == i:
                del self._ike_by_def[d]

    def _add_secret(self, secret):
        gen = self._max_gen + 1
        rec = self._rec(T_SECRET)
        struct.pack_into("<I", rec, 4, gen)
        rec[8:40] = secret
        blk = self._append(rec)
        self._secrets[gen] = [secret, blk]
        self._max_gen = gen
        self._sort_secrets()

    def _sort_secrets(self):
        gens = sorted(self._secrets, reverse=True)
        self._secret_list = [self._secrets[g][0] for g in gens]

    def _evict(self):
        # The entry written longest ago: the oldest record in log order.
        order = {}
        for i in range(len(self._chain)):
            order[self._chain[i]] = i
        victim = None
        best = None
        for spi in self._children:
            v = self._children[spi]
            k = (order.get((v >> 8) & 0xFF, -1), v & 0xFF)
            if best is None or k < best:
                best = k
                victim = spi
        rec = self._rec(T_DROP)
        struct.pack_into("<I", rec, 4, victim)
        self._append(rec)
        self._child_del(victim)
        self._prune_ike()
        self.evicted += 1

    def _random_secret(self):
        rng = self._rng
        if rng is None:
            import os

            rng = getattr(os, "urandom", None)
            if rng is None:
                raise ValueError("no os.urandom here: give the store an rng")
        return _check_secret(bytes(rng(SECRET_LEN)))

    def _damage(self, what):
        self.damage_count += 1
        if len(self.damage) < _MAX_DAMAGE:
            self.damage.append(what)

    def _writable(self):
        if self.readonly:
            raise OSError(_EROFS, "qcd store is read-only: " + self.readonly_reason)

    # -- records -----------------------------------------------------------------------

    def _rec(self, t):
        rec = bytearray(_LENGTHS[t])
        rec[0] = _tag(t)
        return rec

    def _append(self, rec):
        # Append one record; returns its block. The record is acknowledged
        # (this returns) only after it was read back intact.
        ln = len(rec)
        for _ in range(self.blocks + 1):
            if self._head < 0 or self._pos + ln > BLOCK_SIZE:
                self._open()
            blk = self._head
            pos = self._pos
            if self._put(blk, pos, rec, self._head_seed):
                self._last_slot = pos // CHUNK
                self._pos = pos + ln
                self._used[blk] = self._pos - HEADER_LEN
                return blk
            # It did not land: never write after it in this block.
            self._head = -1
        raise OSError(_EIO, "qcd store: no block takes writes")

    def _seal(self, blk, pos, rec, seed):
        # Fill in the forward CRC (of the WINDOW bytes after the record, as
        # they read now) and the record CRC (seeded with the block's seq).
        ln = len(rec)
        end = pos + ln
        n = BLOCK_SIZE - end
        if n > WINDOW:
            n = WINDOW
        w = memoryview(self._win)[:n]
        if n:
            self.dev.readblocks(blk, w, end)
        struct.pack_into("<I", rec, ln - 8, _crc(w))
        struct.pack_into("<I", rec, ln - 4, _crc(memoryview(rec)[: ln - 4], seed))

    def _put(self, blk, pos, rec, seed):
        # Seal, program and read back one record. False if it did not land.
        ln = len(rec)
        try:
            self._seal(blk, pos, rec, seed)
            self.dev.writeblocks(blk, rec, pos)
            self.writes += 1
            self.bytes_written += ln
            self.dev.readblocks(blk, memoryview(self._chk)[:ln], pos)
            if self._chk[:ln] != rec:
                self.write_errors += 1
                self._damage("block %d: a write at offset %d read back wrong (worn flash?)" % (blk, pos))
                return False
        except OSError as e:
            self.write_errors += 1
            self._damage("block %d: write at offset %d failed: %s" % (blk, pos, _err(e)))
            return False
        return True

    def _header(self, seq, prev, base, erases):
        h = bytearray(HEADER_LEN)
        h[0:4] = MAGIC
        h[4] = VERSION
        h[5] = self.blocks
        struct.pack_into("<IIII", h, 8, seq, prev, base, erases)
        return h

    def _seal_header(self, blk, h):
        n = WINDOW
        w = memoryview(self._win)[:n]
        self.dev.readblocks(blk, w, HEADER_LEN)
        struct.pack_into("<I", h, 24, _crc(w))
        struct.pack_into("<I", h, 28, _crc(memoryview(h)[:28]))

    # -- opening a block, and compaction ------------------------------------------------

    def _free(self, b):
        return self._state[b] in (S_BLANK, S_STALE, S_ORPHAN)

    def _live_bytes(self, b):
        # An upper bound of what compacting block b writes.
        n = 0
        for spi in self._children:
            if (self._children[spi] >> 8) & 0xFF == b:
                n += 16
        for i in self._ike:
            if self._ike[i][2] == b:
                n += 48
        for g in self._secrets:
            if self._secrets[g][1] == b:
                n += 48
        if self._boot[1] == b:
            n += 16
        return n

    def _open(self):
        self._writable()
        # A block without a readable header has an unknown erase count: on a
        # new partition it was never erased, after a torn erase it is about
        # the least worn of the rest (blocks are used in turn). Estimate it as
        # the lowest known count, and use such blocks first among equals.
        known = [e for e in self._erase_est if e >= 0]
        low = min(known) if known else 0
        for _ in range(self.blocks):
            cands = [b for b in range(self.blocks) if self._free(b)]
            if not cands:
                self.readonly_reason = "no usable free block (worn out?)"
                raise OSError(_ENOSPC, "qcd store: no usable free block")
            h = -1
            hk = None
            for b in cands:
                e = self._erase_est[b]
                k = (e, 1) if e >= 0 else (low, 0)
                if hk is None or k < hk:
                    h = b
                    hk = k
            # Compaction: copy the oldest blocks' live records into h until
            # RESERVE free blocks remain (never the whole log if it won't fit).
            gc = []
            room = BLOCK_SIZE - HEADER_LEN
            free_after = len(cands) - 1
            while free_after + len(gc) < RESERVE and len(gc) < len(self._chain):
                need = self._live_bytes(self._chain[len(gc)])
                if need > room:
                    break
                room -= need
                gc.append(self._chain[len(gc)])
            seq = self._max_seq + 1
            self._max_seq = seq
            erases = hk[0] + 1
            prev = self._seq[self._chain[-1]] if self._chain else 0
            base = self._seq[self._chain[len(gc)]] if len(gc) < len(self._chain) else seq
            moved = self._fill(h, seq, gc, prev, base, erases)
            if moved is None:
                self._state[h] = S_BAD
                continue
            # Committed: the header is on flash and read back.
            for t in gc:
                self._state[t] = S_STALE
                self._chain.remove(t)
            self._apply_moves(moved, h)
            self._state[h] = S_LIVE
            self._seq[h] = seq
            self._erase_est[h] = erases
            self._chain.append(h)
            self._base = base
            self._head = h
            self._head_seed = _crc(seq.to_bytes(4, "little"))
            if gc:
                self.compactions += 1
            return
        raise OSError(_ENOSPC, "qcd store: no block could be opened")

    def _fill(self, h, seq, gc, prev, base, erases):
        # Erase h, write the live records of the blocks in gc after its
        # header, then the header. Returns the moves to apply to RAM, or
        # None if h failed (nothing in RAM changed, the old blocks stay live).
        try:
            r = self.dev.ioctl(6, h)
        except OSError as e:
            self._damage("block %d: erase failed: %s" % (h, _err(e)))
            self.write_errors += 1
            return None
        self.erases += 1
        if r:
            self._damage("block %d: erase returned %r" % (h, r))
            return None
        self._erase_est[h] = -1  # its old header is gone
        self._seq[h] = -1
        seed = _crc(seq.to_bytes(4, "little"))
        pos = HEADER_LEN
        moved = []  # ("c", spi, ike) / ("i", ike) / ("s", gen) / ("b",)
        done = {}
        for spi in self._children:
            v = self._children[spi]
            ike = v >> 16
            e = self._ike[ike]
            if e[2] in gc and ike not in done:
                rec = self._rec(T_CHILD_NEW)
                d = e[0]
                rec[1] = d[0]
                struct.pack_into("<HI", rec, 2, ike, spi)
                rec[8:40] = d[1:33]
                done[ike] = 1
                moved.append(("i", ike))
            elif (v >> 8) & 0xFF in gc:
                rec = self._rec(T_CHILD)
                struct.pack_into("<HI", rec, 2, ike, spi)
            else:
                continue
            if not self._put(h, pos, rec, seed):
                return None
            moved.append(("c", spi, ike, pos // CHUNK))
            pos += len(rec)
        for g in self._secrets:
            if self._secrets[g][1] in gc:
                rec = self._rec(T_SECRET)
                struct.pack_into("<I", rec, 4, g)
                rec[8:40] = self._secrets[g][0]
                if not self._put(h, pos, rec, seed):
                    return None
                pos += len(rec)
                moved.append(("s", g))
        if self._boot[1] in gc:
            rec = self._rec(T_BOOT)
            struct.pack_into("<I", rec, 4, self._boot[0])
            if not self._put(h, pos, rec, seed):
                return None
            pos += len(rec)
            moved.append(("b",))
        hdr = self._header(seq, prev, base, erases)
        try:
            self._seal_header(h, hdr)
            self.dev.writeblocks(h, hdr, 0)
            self.writes += 1
            self.bytes_written += HEADER_LEN
            self.dev.readblocks(h, memoryview(self._chk)[:HEADER_LEN], 0)
            if self._chk[:HEADER_LEN] != hdr:
                self._damage("block %d: its header read back wrong (worn flash?)" % h)
                self.write_errors += 1
                return None
        except OSError as e:
            self._damage("block %d: header write failed: %s" % (h, _err(e)))
            self.write_errors += 1
            return None
        self._pos = pos
        self._used[h] = pos - HEADER_LEN
        return moved

    def _apply_moves(self, moved, h):
        for m in moved:
            if m[0] == "c":
                self._children[m[1]] = (m[2] << 16) | (h << 8) | m[3]
            elif m[0] == "i":
                self._ike[m[1]][2] = h
            elif m[0] == "s":
                self._secrets[m[1]][1] = h
            else:
                self._boot[1] = h

    # -- mount ---------------------------------------------------------------------------

    def _read(self, blk, buf, off):
        self.dev.readblocks(blk, buf, off)
        self.mount_read_bytes += len(buf)

    def _mount(self, initial_secret, count_boot):
        n = self.blocks
        hdr = bytearray(HEADER_LEN)
        prev = [0] * n
        base = [0] * n
        fcrc = [0] * n
        for b in range(n):
            try:
                self._read(b, hdr, 0)
            except OSError as e:
                self._damage("block %d: unreadable: %s" % (b, _err(e)))
                self._state[b] = S_BAD
                continue
            if hdr[0:4] != MAGIC:
                continue  # blank: erased or never used; nothing to trust
            if _crc(memoryview(hdr)[:28]) != _u32(hdr, 28):
                # Ours, but not whole: an erase or an open cut short (both
                # harmless), or a damaged block whose records are lost.
                self._damage("block %d: header fails its CRC (an interrupted erase or open, or damage); block not used" % b)
                continue
            if hdr[4] != VERSION:
                self._state[b] = S_FOREIGN
                self._damage("block %d: format version %d, not %d: left alone" % (b, hdr[4], VERSION))
                continue
            seq, prev[b], base[b], er, fcrc[b] = struct.unpack_from("<IIIII", hdr, 8)
            self._seq[b] = seq
            self._erase_est[b] = er
            if seq > self._max_seq:
                self._max_seq = seq
        # The newest header names the log: its base, and a chain of prev links.
        newest = -1
        for b in range(n):
            if self._seq[b] >= 0 and self._state[b] != S_FOREIGN and (newest < 0 or self._seq[b] > self._seq[newest]):
                newest = b
        if newest >= 0:
            self._base = base[newest]
            by_seq = {}
            for b in range(n):
                if self._seq[b] >= 0 and self._state[b] != S_FOREIGN:
                    if self._seq[b] in by_seq:
                        self._damage("blocks %d and %d: both have seq %d" % (by_seq[self._seq[b]], b, self._seq[b]))
                    else:
                        by_seq[self._seq[b]] = b
            chain = []
            cur = newest
            while cur >= 0:
                chain.append(cur)
                p = prev[cur]
                if p < self._base or p >= self._seq[cur]:
                    break
                nxt = by_seq.get(p, -1)
                if nxt < 0:
                    self._damage("log block with seq %d is missing: records it held are lost" % p)
                    for s in by_seq:
                        if self._base <= s < p and (nxt < 0 or s > self._seq[nxt]):
                            nxt = by_seq[s]
                cur = nxt
            chain.reverse()
            self._chain = chain
            for b in range(n):
                if self._seq[b] >= 0 and self._state[b] != S_FOREIGN:
                    self._state[b] = S_STALE if self._seq[b] < self._base else S_ORPHAN
            for b in chain:
                self._state[b] = S_LIVE
        # Replay the log, oldest block first: one read of each live block.
        buf = bytearray(BLOCK_SIZE)
        mv = memoryview(buf)
        end = 0
        clean = False
        for b in self._chain:
            try:
                self._read(b, mv[HEADER_LEN:], HEADER_LEN)
            except OSError as e:
                self._damage("block %d: unreadable: %s" % (b, _err(e)))
                end, clean = 0, False
                continue
            end, clean = self._scan(b, buf, fcrc[b])
            self._used[b] = end - HEADER_LEN
        buf = mv = None
        # Append to the newest block only if the bytes after its last record
        # are still as they were (no write was cut short there).
        if self._chain and clean and end + CHUNK <= BLOCK_SIZE:
            self._head = self._chain[-1]
            self._pos = end
            self._head_seed = _crc(self._seq[self._head].to_bytes(4, "little"))
        self._finish_replay()
        self._sort_secrets()
        # This boot counts only if it is recorded (not for tools that only look).
        self.boot_count = self._boot[0] + (1 if count_boot and not self.readonly else 0)
        if self.readonly:
            if not self._secrets:
                self.fresh_secret = ""
            return
        try:
            if not self._secrets:
                if not self._chain:
                    why = "blank partition (no valid block header)" if not self.damage_count else "no readable log"
                else:
                    why = "no secret record in the log"
                if self.damage_count:
                    why += "; %d damage(s) found" % self.damage_count
                if initial_secret is not None:
                    self._add_secret(_check_secret(initial_secret))
                    why += "; given secret written"
                else:
                    self._add_secret(self._random_secret())
                self.fresh_secret = why
            if count_boot:
                rec = self._rec(T_BOOT)
                struct.pack_into("<I", rec, 4, self.boot_count)
                blk = self._append(rec)
                self._boot = [self.boot_count, blk]
        except OSError as e:
            # Never brick: whatever we hold stays usable from RAM.
            if not self.readonly_reason:
                self.readonly_reason = "writes fail: %s" % _err(e)
            if not self._secrets:
                self._secrets[self._max_gen + 1] = [self._random_secret(), -1]
                self._sort_secrets()
                self.fresh_secret = (self.fresh_secret or "no secret") + "; held in RAM only (the partition takes no writes)"

    def _scan(self, b, buf, hfcrc):
        # Replay block b's records; returns (end of the valid records, whether
        # the bytes after them are as they were when the last one was written).
        seed = _crc(self._seq[b].to_bytes(4, "little"))
        mv = memoryview(buf)
        pos = HEADER_LEN
        last = hfcrc
        while pos + CHUNK <= BLOCK_SIZE:
            ln = self._valid(buf, mv, pos, seed)
            if not ln:
                break
            self._apply(buf, pos, b)
            last = _u32(buf, pos + ln - 8)
            pos += ln
        end = pos
        n = BLOCK_SIZE - end
        if n > WINDOW:
            n = WINDOW
        if _crc(mv[end : end + n]) == last:
            return end, True
        # Something was written after the last valid record and is not a
        # valid record: a write cut short, or a damaged record. Look for
        # valid records after it (a damaged record in the middle of a block
        # must not take the later ones with it); never append here again.
        p = end + CHUNK
        found = 0
        while p + CHUNK <= BLOCK_SIZE:
            ln = self._valid(buf, mv, p, seed)
            if ln:
                self._apply(buf, p, b)
                found += 1
                p += ln
            else:
                p += CHUNK
        if found:
            self._damage("block %d: damaged record at offset %d; %d later record(s) kept" % (b, end, found))
        else:
            self._damage("block %d: torn or damaged bytes at offset %d (a write cut short?)" % (b, end))
        return end, False

    def _valid(self, buf, mv, pos, seed):
        t = buf[pos]
        ln = ((t >> 6) + 1) * 16
        typ = t & 0x3F
        if typ == 0 or typ == 0x3F or pos + ln > BLOCK_SIZE:
            return 0
        if _crc(mv[pos : pos + ln - 4], seed) != _u32(buf, pos + ln - 4):
            return 0
        want = _LENGTHS.get(typ)
        if want is None:
            self._damage("record type %d at offset %d: unknown (newer format?), skipped" % (typ, pos))
        elif want != ln:
            self._damage("record type %d at offset %d: wrong length %d, skipped" % (typ, pos, ln))
        return ln

    def _apply(self, buf, pos, b):
        typ = buf[pos] & 0x3F
        if _LENGTHS.get(typ) != ((buf[pos] >> 6) + 1) * 16:
            return
        v = _u32(buf, pos + 4)
        if typ == T_CHILD or typ == T_CHILD_NEW:
            ike = struct.unpack_from("<H", buf, pos + 2)[0]
            if typ == T_CHILD_NEW:
                d = bytes(buf[pos + 1 : pos + 2]) + bytes(buf[pos + 8 : pos + 40])
                e = self._ike.get(ike)
                if e is None:
                    self._ike[ike] = [d, 0, b]
                else:
                    e[0] = d
                    e[2] = b
            self._child_set(v, ike, b, pos // CHUNK)
        elif typ == T_DROP:
            self._child_del(v)
        elif typ == T_SECRET:
            self._secrets[v] = [bytes(buf[pos + 8 : pos + 40]), b]
            if v > self._max_gen:
                self._max_gen = v
        elif typ == T_RETIRE:
            self._secrets.pop(v, None)
            if v > self._max_gen:
                self._max_gen = v
        elif typ == T_BOOT:
            self._boot = [v, b]

    def _finish_replay(self):
        # Children whose IKE SA definition never appeared cannot be answered
        # for: damage (their CHILD_NEW record was lost).
        lost = []
        for spi in self._children:
            e = self._ike[self._children[spi] >> 16]
            if e[0] is None:
                lost.append(spi)
        for spi in lost:
            self._damage("Child SPI %08x: its IKE SA record is lost; entry dropped" % spi)
            self._child_del(spi)
        self._prune_ike()
        for i in self._ike:
            self._ike_by_def[self._ike[i][0]] = i
        if lost and not self.readonly:
            # Make the drops durable, so a reused IKE SA id cannot revive them.
            try:
                for spi in lost:
                    rec = self._rec(T_DROP)
                    struct.pack_into("<I", rec, 4, spi)
                    self._append(rec)
            except OSError:
                pass
        while len(self._children) > self.max_children:
            if self.readonly:
                break
            try:
                self._evict()
            except OSError:
                break


def _check_secret(s):
    if not isinstance(s, (bytes, bytearray)) or len(s) != SECRET_LEN:
        raise ValueError("a QCD secret must be %d bytes" % SECRET_LEN)
    return bytes(s)


def _err(e):
    a = e.args
    if len(a) > 1:
        return "%s (%s)" % (a[1], a[0])
    return str(a[0]) if a else "OSError"


def mount(dev, rng=None, **kw):
    """Mount the qcd partition on `dev`: a Store (see its docstring)."""
    return Store(dev, rng, **kw)

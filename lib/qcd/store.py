# qcd.store: the `qcd` flash partition, the token maker's non-volatile storage
# (RFC 6290 §1.2: the secret must survive restarts; §8.2: the Child SPI ->
# IKE SA map, "updated on every Child SA create, rekey and delete").
#
# A key source for the hook (the interface of qcdhost.keys) that lives in a raw
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
# that CRC, a write was cut short there (reported). No block found at mount
# is programmed again before it is erased: each boot's first write opens a
# block, which takes the whole log if it fits, so a torn region (whose bits
# may read differently on every read) is never programmed over nor read
# again. When a block is full the store opens the free block with the fewest
# erases; if fewer than _RESERVE free blocks would remain, the oldest log
# block's live records are copied into the new block before its header is
# written, and the header (written last, so an interrupted compaction is
# simply rolled back) declares the old block dead. Erases therefore go round
# all blocks, and live data moves with them.
#
# RAM is bounded by the caps below, whatever the partition holds (crafted
# images included) and whatever the number of writes: the map (Child SPI ->
# IKE SA id, at most cap + 1 while reading), the IKE SA table (ids up to
# max(cap, 64)), at most MAX_GENERATIONS secrets, and a few per-block
# integers. Mount reads each block at most once and never raises on what it
# reads; counters at the end of their u32 range stop or saturate (FORMAT.md).

import struct
from binascii import crc32  # the CRC-32 of FORMAT.md (unsigned on CPython and MicroPython)

from qcd.tokens import SECRET_LEN, check_secret, fingerprint

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


# Public: tools and tests size partitions and caps with these.
BLOCK_SIZE = const(4096)
MIN_BLOCKS = const(4)
MAX_BLOCKS = const(255)
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

# Private (folded by the compiler; docs/FORMAT.md gives each its meaning).
_HEADER_LEN = const(32)
_CHUNK = const(16)  # flash-encryption block: every record is a multiple of it
_WINDOW = const(48)  # forward-CRC window: the longest record, so a torn write lies inside it
_MAGIC = const(b"QCDP")
_VERSION = const(1)
# Free blocks kept in hand besides the one being opened: one to open next,
# and one more so that a block whose erase fails does not stop the store.
_RESERVE = const(2)
_MAX_DAMAGE = const(16)  # damage lines kept for status(); more are counted
_U32 = const(0xFFFFFFFF)  # every counter on flash is a u32: seq and generation stop there, the rest saturate

# Record types. Tag byte: bits 7-6 = length / 16 - 1, bits 5-0 = type.
_T_BOOT = const(0x01)  # 16: boot counter
_T_SECRET = const(0x02)  # 48: secret generation
_T_RETIRE = const(0x03)  # 16: a generation retired
_T_CHILD = const(0x04)  # 16: Child SPI -> known IKE SA id
_T_DROP = const(0x05)  # 16: Child SPI removed
_T_CHILD_NEW = const(0x06)  # 48: IKE SA id defined, and a Child SPI on it
_LENGTHS = {_T_BOOT: 16, _T_SECRET: 48, _T_RETIRE: 16, _T_CHILD: 16, _T_DROP: 16, _T_CHILD_NEW: 48}
_F_INITIATOR = const(0x01)
_F_IPV6 = const(0x02)
# Bits 2-7 of CHILD_NEW's flags: which secret generation made the token the
# peer holds for this IKE SA, as a tag 1..63 (FORMAT.md); 0: not recorded.
_GEN_SHIFT = const(2)

# Block states (status(), block_info() and qcdtool inspect).
S_BLANK = "blank"  # no valid header: erased, never used, or damaged
S_LIVE = "live"  # in the log
S_STALE = "stale"  # a valid header older than the log's base: free, awaiting reuse
S_ORPHAN = "orphan"  # valid header not on the log's chain (an interrupted open): free
S_FOREIGN = "foreign"  # our magic, another format version: left alone, never written
S_BAD = "bad"  # an erase or a verified write failed this boot: not used until reboot

_EROFS = const(30)
_ENOSPC = const(28)
_EIO = const(5)


def _u32(b, off):
    return struct.unpack_from("<I", b, off)[0]


def _seed(seq):
    # Records' CRCs start from the CRC of their block's seq (FORMAT.md).
    return crc32(seq.to_bytes(4, "little"))


def _rec(t, v, body=b"", b1=0, ike=0):
    # A record of type t, unsealed. Every record starts with the same frame:
    # tag, byte 1 (CHILD_NEW flags), u16 at 2 (IKE SA id), u32 v at 4 (boot
    # count, generation or Child SPI); any body follows at 8.
    rec = bytearray(_LENGTHS[t])
    struct.pack_into("<BBHI", rec, 0, ((len(rec) // 16 - 1) << 6) | t, b1, ike, v)
    rec[8 : 8 + len(body)] = body
    return rec


def _gen_tag(gen):
    # A generation's 6-bit tag in CHILD_NEW's flags: 1..63, 0 for "unknown".
    return (gen - 1) % 63 + 1 if gen > 0 else 0


def _child_rec(spi, ike, d=None):
    # CHILD_NEW (with the IKE SA definition d: flags | SPI-I | SPI-R | address)
    # or, when the IKE SA is already on flash, the 16-byte CHILD.
    if d is None:
        return _rec(_T_CHILD, spi, b"", 0, ike)
    return _rec(_T_CHILD_NEW, spi, d[1:33], d[0], ike)


class Store:
    """The QCD partition: secrets, the RFC 6290 §8.2 Child SPI map, a boot counter.

    dev            an esp32.Partition (or qcdhost.emu.flash.FlashEmu): 4096-byte
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
        fit = (n - 1 - _RESERVE) * (BLOCK_SIZE - _HEADER_LEN) // 2 // 48
        self.max_children = max(1, min(int(max_children), fit))
        # IKE SA ids a writer can have allocated: the lowest unused one, so
        # never above the number of Child SAs it held (the cap, or the
        # default cap of a writer that had a higher one). Larger ids on
        # flash are damage: skipped, which bounds the IKE SA table.
        self._ike_limit = max(self.max_children, DEFAULT_MAX_CHILDREN)
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
        self._win = bytearray(_WINDOW)
        self._chk = bytearray(48)
        # diagnostics
        self.damage = []
        self.fresh_secret = ""  # why this boot created a secret ("" if it did not)
        self.readonly_reason = "opened read-only" if readonly else ""
        self.damage_count = self.evicted = self.writes = self.bytes_written = self.erases = 0
        self.compactions = self.write_errors = self.mount_read_bytes = 0
        self._mount_evicted = 0
        self._restart = False  # the next open is this boot's first (see _open)
        self._mount(initial_secret, count_boot)

    # -- the keys.py interface ------------------------------------------------------

    def secrets(self):
        return self._secret_list

    def child_get(self, spi):
        v = self._children.get(spi)
        if v is None:
            return None
        # the IKE SA definition -> the keys.py map entry
        d = self._ike[v >> 16][0]
        return (d[1:9], d[9:17], bool(d[0] & _F_INITIATOR), d[17:33] if d[0] & _F_IPV6 else d[17:21])

    def child_put(self, spi, spi_i, spi_r, initiator, peer_ip, gen=0):
        """Persist Child SPI -> (parent IKE SA, our role, peer address, and
        the secret generation of the IKE SA's token, 0 if not known).
        Nothing is written when the entry is already there."""
        if not isinstance(spi, int) or not 0 <= spi <= 0xFFFFFFFF:
            raise ValueError("a Child SPI is a 32-bit unsigned int")
        if len(spi_i) != 8 or len(spi_r) != 8:
            raise ValueError("IKE SPIs are 8 bytes")
        if len(peer_ip) != 4 and len(peer_ip) != 16:
            raise ValueError("a peer address is 4 or 16 bytes")
        flags = (_F_INITIATOR if initiator else 0) | (_F_IPV6 if len(peer_ip) == 16 else 0) | (_gen_tag(gen) << _GEN_SHIFT)
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
            blk = self._append(_child_rec(spi, ike, d))
            self._ike[ike] = [d, 0, blk]
            self._ike_by_def[d] = ike
        else:
            blk = self._append(_child_rec(spi, ike))
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
        self._drop(spi)

    def generations(self):
        """The generation numbers of secrets(), in the same order."""
        return sorted(self._secrets, reverse=True)

    def generation_of(self, spi_i, spi_r):
        """The secret generation that made the token of IKE SA (spi_i, spi_r),
        from the map: 0 when not known (no Child SA of it mapped, written
        before generations were recorded, or the tag fits no single held
        generation)."""
        tags = set()
        for e in self._ike.values():
            d = e[0]
            if d is not None and d[1:9] == spi_i and d[9:17] == spi_r:
                tags.add(d[0] >> _GEN_SHIFT)
        if len(tags) != 1:
            return 0
        t = tags.pop()
        hits = [g for g in self._secrets if _gen_tag(g) == t] if t else []
        return hits[0] if len(hits) == 1 else 0

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
        secret = self._random_secret() if secret is None else check_secret(secret)
        for g in self._secrets:
            if self._secrets[g][0] == secret:
                raise ValueError("that secret is already held (%s)" % fingerprint(secret))
        if len(self._secrets) >= MAX_GENERATIONS:
            raise ValueError("the store holds %d secrets, its maximum: retire one first" % MAX_GENERATIONS)
        if self._next_gen() < 0:
            raise ValueError("secret generations exhausted (the current one is 0xFFFFFFFF): erase the partition and provision it again")
        self._writable()
        self._add_secret(secret)
        return fingerprint(secret)

    def retire(self, fp):
        """Forget the secret with fingerprint `fp` (never the current one).
        True when done; ValueError saying why when not (the current secret,
        or no secret with that fingerprint: the ones held are named)."""
        cur = max(self._secrets) if self._secrets else -1
        for g in self._secrets:
            if fingerprint(self._secrets[g][0]) == fp:
                if g == cur:
                    raise ValueError("%s is the current secret: roll over to a new one first" % fp)
                self._writable()
                self._append(_rec(_T_RETIRE, g))
                del self._secrets[g]
                self._sort_secrets()
                return True
        raise ValueError("no secret with fingerprint %r here (held: %s)" % (fp, ", ".join(fingerprint(s) for s in self.secrets()) or "none"))

    # -- diagnostics ------------------------------------------------------------------

    def status(self):
        """What the partition holds and what happened to it; never a secret."""
        gens = sorted(self._secrets, reverse=True)
        blocks = {}
        for b in range(self.blocks):
            st, seq, er, used = self.block_info(b)
            s = st + (" (head)" if b == self._head else "")
            if seq >= 0:
                s += ", seq %d" % seq
            s += ", erases ~%s" % (er if er >= 0 else "?")
            if st == S_LIVE:
                s += ", %d of %d bytes used" % (used, BLOCK_SIZE - _HEADER_LEN)
            blocks[b] = s
        more = self.damage_count - len(self.damage)
        return {
            "format": _VERSION,
            "blocks": self.blocks,
            "generations": ["gen %d %s%s" % (g, fingerprint(self._secrets[g][0]), " (current)" if g == gens[0] else "") for g in gens],
            "secrets": [fingerprint(s) for s in self._secret_list],
            "boot_count": self.boot_count,
            "child_map": len(self._children),
            "child_cap": self.max_children,
            "ike_sas": len(self._ike),
            "evicted": self.evicted,
            "fresh_secret": self.fresh_secret or "no",
            "damage": self.damage + (["... and %d more" % more] if more > 0 else []),
            "damage_count": self.damage_count,
            "block_state": blocks,
            "head": ("block %d offset %d" % (self._head, self._pos)) if self._head >= 0 else "none (the next write opens a block)",
            "mount_read_bytes": self.mount_read_bytes,
            "writes": self.writes,
            "bytes_written": self.bytes_written,
            "erases": self.erases,
            "compactions": self.compactions,
            "write_errors": self.write_errors,
            "readonly": self.readonly_reason or "no",
        }

    def block_info(self, b):
        """(state, seq or -1, erase estimate or -1, bytes used) of block b."""
        return (self._state[b], self._seq[b], self._erase_est[b], self._used[b])

    def __repr__(self):
        return "<qcd.store %d blocks, secrets=%s, children=%d, boot %d>" % (
            self.blocks,
            ",".join(fingerprint(s) for s in self._secret_list) or "-",
            len(self._children),
            self.boot_count,
        )

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

    def _drop(self, spi):
        # DROP on flash, then out of RAM. If the DROP needs a new block and
        # opening it compacts the block holding the entry's latest record,
        # the entry is simply not copied and no DROP is needed: the drop
        # lands with the new block's header, in one program (an eviction
        # must not copy its victim forward first: FORMAT.md, At the map's cap).
        self._append(_rec(_T_DROP, spi), spi)
        self._child_del(spi)
        self._prune_ike()

    def _prune_ike(self):
        # An IKE SA with no Child SA left is forgotten; its id may be reused
        # (a later CHILD_NEW record redefines it).
        dead = [i for i in self._ike if self._ike[i][1] <= 0]
        for i in dead:
            d = self._ike.pop(i)[0]
            if d is not None and self._ike_by_def.get(d) == i:
                del self._ike_by_def[d]

    def _next_gen(self):
        # One more than any generation seen (FORMAT.md, Limits): above every
        # live one. At the end of the u32 range: one more than the newest live
        # generation, or 1 when none is live; none if the newest live is
        # already 0xFFFFFFFF (a rollover is then refused).
        if self._max_gen < _U32:
            return self._max_gen + 1
        cur = max(self._secrets) if self._secrets else 0
        return cur + 1 if cur < _U32 else -1

    def _add_secret(self, secret):
        gen = self._next_gen()
        if gen < 0:
            raise ValueError("secret generations exhausted (the current one is 0xFFFFFFFF): erase the partition and provision it again")
        blk = self._append(_rec(_T_SECRET, gen, secret))
        self._secrets[gen] = [secret, blk]
        if gen > self._max_gen:
            self._max_gen = gen
        self._sort_secrets()

    def _sort_secrets(self):
        gens = sorted(self._secrets, reverse=True)
        self._secret_list = [self._secrets[g][0] for g in gens]

    def _evict(self, write=True):
        # The entry written longest ago: the oldest record in log order.
        # write=False (replay): only from RAM; every mount decides the same.
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
        if write:
            self._drop(victim)
        else:
            self._child_del(victim)
        self.evicted += 1

    def _random_secret(self):
        rng = self._rng
        if rng is None:
            import os

            rng = getattr(os, "urandom", None)
            if rng is None:
                raise ValueError("no os.urandom here: give the store an rng")
        return check_secret(bytes(rng(SECRET_LEN)))

    def _damage(self, what):
        self.damage_count += 1
        if len(self.damage) < _MAX_DAMAGE:
            self.damage.append(what)

    def _writable(self):
        if self.readonly:
            raise OSError(_EROFS, "qcd store is read-only: " + self.readonly_reason)

    # -- writing -----------------------------------------------------------------------

    def _append(self, rec, drop=None):
        # Append one record; returns its block. The record is acknowledged
        # (this returns) only after it was read back intact. drop: the Child
        # SPI a DROP record removes (see _drop); -1 is returned when a
        # compaction removed it instead.
        ln = len(rec)
        for _ in range(self.blocks + 1):
            if self._head < 0 or self._pos + ln > BLOCK_SIZE:
                if self._open(drop):
                    return -1
            blk = self._head
            pos = self._pos
            if self._put(blk, pos, rec, self._head_seed):
                self._last_slot = pos // _CHUNK
                self._pos = pos + ln
                self._used[blk] = self._pos - _HEADER_LEN
                return blk
            # It did not land: never write after it in this block.
            self._head = -1
        raise OSError(_EIO, "qcd store: no block takes writes")

    def _put(self, blk, pos, rec, seed):
        # Seal, program and read back one record, or a block header (pos 0,
        # seed 0: its fcrc and crc sit at the same place from its end).
        # False if it did not land.
        ln = len(rec)
        end = pos + ln
        n = BLOCK_SIZE - end
        if n > _WINDOW:
            n = _WINDOW
        w = memoryview(self._win)[:n]
        try:
            # The forward CRC (of the bytes after the record, as they read
            # now) and the CRC (seeded with the block's seq) go last in it.
            if n:
                self.dev.readblocks(blk, w, end)
            struct.pack_into("<I", rec, ln - 8, crc32(w))
            struct.pack_into("<I", rec, ln - 4, crc32(memoryview(rec)[: ln - 4], seed))
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

    # -- opening a block, and compaction ------------------------------------------------

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

    def _open(self, drop=None):
        # Open a new head block; True if it compacted away the latest record
        # of Child SPI `drop` (which was then not copied).
        self._writable()
        # A block without a readable header has an unknown erase count: on a
        # new partition it was never erased, after a torn erase it is about
        # the least worn of the rest (blocks are used in turn). Estimate it as
        # the lowest known count, and use such blocks first among equals.
        known = [e for e in self._erase_est if e >= 0]
        low = min(known) if known else 0
        for _ in range(self.blocks):
            cands = [b for b in range(self.blocks) if self._state[b] in (S_BLANK, S_STALE, S_ORPHAN)]
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
            room = BLOCK_SIZE - _HEADER_LEN
            free_after = len(cands) - 1
            if self._restart:
                # The first block a boot opens takes the whole log if it fits
                # (FORMAT.md, Reading, step 4): then no block written before
                # this boot is read again, so whatever a torn program or
                # erase left there (bits that read differently each time, a
                # header that checks once) cannot change what the log says.
                need = 0
                for b in self._chain:
                    need += self._live_bytes(b)
                if need <= room:
                    gc = self._chain[:]
            while free_after + len(gc) < _RESERVE and len(gc) < len(self._chain):
                need = self._live_bytes(self._chain[len(gc)])
                if need > room:
                    break
                room -= need
                gc.append(self._chain[len(gc)])
            if self._max_seq >= _U32:
                # seq never wraps (it orders the log): 2**32 block opens are
                # more erases than any flash survives, so only a crafted or
                # damaged partition gets here. Read-only until re-provisioned.
                self.readonly_reason = "block sequence numbers exhausted (seq 0xFFFFFFFF on the partition): erase the partition and provision it again"
                raise OSError(_ENOSPC, "qcd store: " + self.readonly_reason)
            seq = self._max_seq + 1
            self._max_seq = seq
            erases = hk[0] + 1 if hk[0] < _U32 else _U32
            prev = self._seq[self._chain[-1]] if self._chain else 0
            base = self._seq[self._chain[len(gc)]] if len(gc) < len(self._chain) else seq
            v = self._children.get(drop) if drop is not None else None
            skip = drop if v is not None and (v >> 8) & 0xFF in gc else None
            moved = self._fill(h, seq, gc, prev, base, erases, skip)
            if moved is None:
                self._state[h] = S_BAD
                continue
            # Committed: the header is on flash and read back. What was in
            # the gc blocks now lives in h.
            slots, ikes = moved
            for t in gc:
                self._state[t] = S_STALE
                self._chain.remove(t)
            for spi in slots:
                self._children[spi] = (self._children[spi] >> 16 << 16) | (h << 8) | slots[spi]
            for i in ikes:
                self._ike[i][2] = h
            for g in self._secrets:
                if self._secrets[g][1] in gc:
                    self._secrets[g][1] = h
            if self._boot[1] in gc:
                self._boot[1] = h
            self._state[h] = S_LIVE
            self._seq[h] = seq
            self._erase_est[h] = erases
            self._chain.append(h)
            self._base = base
            self._head = h
            self._head_seed = _seed(seq)
            if gc:
                self.compactions += 1
            self._restart = False
            return skip is not None
        raise OSError(_ENOSPC, "qcd store: no block could be opened")

    def _fill(self, h, seq, gc, prev, base, erases, skip=None):
        # Erase h, write the live records of the blocks in gc after its
        # header, then the header. Returns ({Child SPI: its new slot}, [IKE
        # SA ids whose CHILD_NEW moved]), or None if h failed (nothing in
        # RAM changed, the old blocks stay live). Child SPI `skip` is not
        # copied (it is being dropped).
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
        seed = _seed(seq)
        recs = []  # (record, Child SPI or None)
        slots = {}
        ikes = []
        for spi in self._children:
            if spi == skip:
                continue
            v = self._children[spi]
            ike = v >> 16
            e = self._ike[ike]
            if e[2] in gc and ike not in ikes:
                recs.append((_child_rec(spi, ike, e[0]), spi))
                ikes.append(ike)
            elif (v >> 8) & 0xFF in gc:
                recs.append((_child_rec(spi, ike), spi))
        for g in self._secrets:
            if self._secrets[g][1] in gc:
                recs.append((_rec(_T_SECRET, g, self._secrets[g][0]), None))
        if self._boot[1] in gc:
            recs.append((_rec(_T_BOOT, self._boot[0]), None))
        pos = _HEADER_LEN
        for rec, spi in recs:
            if not self._put(h, pos, rec, seed):
                return None
            if spi is not None:
                slots[spi] = pos // _CHUNK
            pos += len(rec)
        hdr = bytearray(_HEADER_LEN)
        hdr[0:4] = _MAGIC
        struct.pack_into("<BBHIIII", hdr, 4, _VERSION, self.blocks, 0, seq, prev, base, erases)
        if not self._put(h, 0, hdr, 0):
            return None
        self._pos = pos
        self._used[h] = pos - _HEADER_LEN
        return slots, ikes

    # -- mount ---------------------------------------------------------------------------

    def _read(self, blk, buf, off):
        self.dev.readblocks(blk, buf, off)
        self.mount_read_bytes += len(buf)

    def _mount(self, initial_secret, count_boot):
        n = self.blocks
        hdr = bytearray(_HEADER_LEN)
        prev = [0] * n
        base = [0] * n
        fcrc = [0] * n
        seqs = self._seq  # stays -1 for a block without a valid version-1 header
        for b in range(n):
            try:
                self._read(b, hdr, 0)
            except OSError as e:
                self._damage("block %d: unreadable: %s" % (b, _err(e)))
                self._state[b] = S_BAD
                continue
            if hdr[0:4] != _MAGIC:
                continue  # blank: erased or never used; nothing to trust
            if crc32(memoryview(hdr)[:28]) != _u32(hdr, 28):
                # Ours, but not whole: an erase or an open cut short (both
                # harmless), or a damaged block whose records are lost.
                self._damage("block %d: header fails its CRC (an interrupted erase or open, or damage); block not used" % b)
                continue
            if hdr[4] != _VERSION:
                self._state[b] = S_FOREIGN
                self._damage("block %d: format version %d, not %d: left alone" % (b, hdr[4], _VERSION))
                continue
            seqs[b], prev[b], base[b], self._erase_est[b], fcrc[b] = struct.unpack_from("<IIIII", hdr, 8)
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
                    self._damage("blocks %d and %d: both have seq %d" % (by_seq[s], b, s))
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
                    self._damage("log block with seq %d is missing: records it held are lost" % p)
                    for s in by_seq:
                        if self._base <= s < p and (nxt < 0 or s > seqs[nxt]):
                            nxt = by_seq[s]
                cur = nxt
            chain.reverse()
            self._chain = chain
            for b in range(n):
                if seqs[b] >= 0:
                    self._state[b] = S_LIVE if b in chain else S_STALE if seqs[b] < self._base else S_ORPHAN
        # Replay the log, oldest block first: one read of each live block.
        buf = bytearray(BLOCK_SIZE)
        mv = memoryview(buf)
        for b in self._chain:
            try:
                self._read(b, mv[_HEADER_LEN:], _HEADER_LEN)
            except OSError as e:
                self._damage("block %d: unreadable: %s" % (b, _err(e)))
                continue
            self._used[b] = self._scan(b, buf, fcrc[b]) - _HEADER_LEN
        buf = mv = None
        # No block found at mount is ever written again before it is erased
        # (FORMAT.md, Reading, step 4): the first write of this boot opens a
        # block. The bytes after the newest block's last record may be a
        # torn program that happens to read as erased this once, or crafted
        # bytes resealed to match a forward CRC: never program over them.
        self._restart = not self.readonly
        self._finish_replay()
        self._sort_secrets()
        # This boot counts only if it is recorded (not for tools that only look).
        self.boot_count = self._boot[0] + (1 if count_boot and not self.readonly and self._boot[0] < _U32 else 0)
        if self.readonly:
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
                    self._add_secret(check_secret(initial_secret))
                    why += "; given secret written"
                else:
                    self._add_secret(self._random_secret())
                self.fresh_secret = why
            if count_boot:
                self._boot = [self.boot_count, self._append(_rec(_T_BOOT, self.boot_count))]
        except OSError as e:
            # Never brick: whatever we hold stays usable from RAM.
            if not self.readonly_reason:
                self.readonly_reason = "writes fail: %s" % _err(e)
            if not self._secrets:
                self._secrets[self._max_gen + 1] = [self._random_secret(), -1]
                self._sort_secrets()
                self.fresh_secret = (self.fresh_secret or "no secret") + "; held in RAM only (the partition takes no writes)"

    def _scan(self, b, buf, hfcrc):
        # Replay block b's records; returns the end of its valid records.
        seed = _seed(self._seq[b])
        mv = memoryview(buf)
        pos = _HEADER_LEN
        last = hfcrc
        while pos + _CHUNK <= BLOCK_SIZE:
            ln = self._replay(buf, mv, pos, seed, b)
            if not ln:
                break
            last = _u32(buf, pos + ln - 8)
            pos += ln
        end = pos
        n = BLOCK_SIZE - end
        if n > _WINDOW:
            n = _WINDOW
        if crc32(mv[end : end + n]) == last:
            return end
        # Something was written after the last valid record and is not a
        # valid record: a write cut short, or a damaged record. Look for
        # valid records after it (a damaged record in the middle of a block
        # must not take the later ones with it); never append here again.
        p = end + _CHUNK
        found = 0
        while p + _CHUNK <= BLOCK_SIZE:
            ln = self._replay(buf, mv, p, seed, b)
            if ln:
                found += 1
                p += ln
            else:
                p += _CHUNK
        if found:
            self._damage("block %d: damaged record at offset %d; %d later record(s) kept" % (b, end, found))
        else:
            self._damage("block %d: torn or damaged bytes at offset %d (a write cut short?)" % (b, end))
        return end

    def _replay(self, buf, mv, pos, seed, b):
        # The record at pos in block b: 0 if there is no valid record there;
        # else its length, after applying it (FORMAT.md, Record types).
        t = buf[pos]
        ln = ((t >> 6) + 1) * 16
        typ = t & 0x3F
        if typ == 0 or typ == 0x3F or pos + ln > BLOCK_SIZE:
            return 0
        if crc32(mv[pos : pos + ln - 4], seed) != _u32(buf, pos + ln - 4):
            return 0
        want = _LENGTHS.get(typ)
        if want != ln:
            # Skipped: a newer writer's record, or a known one of another length.
            if want is None:
                self._damage("record type %d at offset %d: unknown (newer format?), skipped" % (typ, pos))
            else:
                self._damage("record type %d at offset %d: wrong length %d, skipped" % (typ, pos, ln))
            return ln
        v = _u32(buf, pos + 4)
        if typ == _T_CHILD or typ == _T_CHILD_NEW:
            ike = struct.unpack_from("<H", buf, pos + 2)[0]
            if ike > self._ike_limit:
                self._damage("record type %d at offset %d: IKE SA id %d above any a writer allocates, skipped" % (typ, pos, ike))
                return ln
            if typ == _T_CHILD_NEW:
                d = bytes(buf[pos + 1 : pos + 2]) + bytes(buf[pos + 8 : pos + 40])
                e = self._ike.get(ike)
                if e is None:
                    self._ike[ike] = [d, 0, b]
                else:
                    e[0] = d
                    e[2] = b
            self._child_set(v, ike, b, pos // _CHUNK)
            if len(self._children) > self.max_children + 1:
                # More than a writer ever leaves (the cap, plus a put whose
                # eviction a cut interrupted): RAM stays bounded by the cap.
                self._evict(False)
                self._mount_evicted += 1
        elif typ == _T_DROP:
            self._child_del(v)
        elif typ == _T_BOOT:
            self._boot = [v, b]
        else:
            if typ == _T_SECRET:
                if v not in self._secrets and len(self._secrets) >= MAX_GENERATIONS:
                    # More live generations than a writer allows: keep the
                    # newest MAX_GENERATIONS (RAM stays bounded).
                    low = min(self._secrets)
                    self._damage("secret generation %d at offset %d: more than %d live, generation %d dropped" % (v, pos, MAX_GENERATIONS, min(low, v)))
                    if v < low:
                        return ln
                    del self._secrets[low]
                self._secrets[v] = [bytes(buf[pos + 8 : pos + 40]), b]
            else:
                self._secrets.pop(v, None)
            if v > self._max_gen:
                self._max_gen = v
        return ln

    def _finish_replay(self):
        if self._mount_evicted:
            self._damage("the log holds more Child SAs than the cap (%d): %d evicted while reading it" % (self.max_children, self._mount_evicted))
        # Children whose IKE SA definition never appeared cannot be answered
        # for: damage (their CHILD_NEW record was lost).
        lost = []
        for spi in self._children:
            if self._ike[self._children[spi] >> 16][0] is None:
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
                    self._append(_rec(_T_DROP, spi))
            except OSError:
                pass
        while len(self._children) > self.max_children:
            if self.readonly:
                break
            try:
                self._evict()
            except OSError:
                break


def _err(e):
    a = e.args
    if len(a) > 1:
        return "%s (%s)" % (a[1], a[0])
    return str(a[0]) if a else "OSError"


def mount(dev, rng=None, **kw):
    """Mount the qcd partition on `dev`: a Store (see its docstring)."""
    return Store(dev, rng, **kw)

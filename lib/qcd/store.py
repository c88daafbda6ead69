# qcd.store: the `qcd` flash partition, the token maker's non-volatile storage
# (RFC 6290 §1.2: the secret must survive restarts; §8.2: the Child SPI ->
# IKE SA map, "updated on every Child SA create, rekey and delete").
#
# A key source for the hook (the interface of qcdhost.keys) kept in a record log
# on a raw data partition (qcd.log: blocks, the record frame, forward CRCs,
# appending, compaction, the mount scan). This module is what the records
# mean: secret generations, the Child SPI map and its IKE SA table, the boot
# counter; which live records a compaction copies; what a mount makes of
# what it read. The format is docs/FORMAT.md (every field, block state and
# recovery rule); keep the two in step.
#
# RAM is bounded by the caps below, whatever the partition holds (crafted
# images included) and whatever the number of writes: the map (Child SPI ->
# IKE SA id, at most cap + 1 while reading), the IKE SA table (ids up to
# max(cap, 64)), at most MAX_GENERATIONS secrets, and a few per-block
# integers. Mount reads each block at most once and never raises on what it
# reads; counters at the end of their u32 range stop or saturate (FORMAT.md).

import struct

from qcd import log as _log
from qcd.log import BLOCK_SIZE, MAX_BLOCKS, MIN_BLOCKS, S_LIVE  # noqa: F401  (public here too; block states: qcd.log)
from qcd.tokens import SECRET_LEN, check_secret, fingerprint

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


# Public: tools and tests size partitions and caps with these.
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

_U32 = const(0xFFFFFFFF)

# Record types (FORMAT.md, Record types). Tag byte: bits 7-6 = length / 16 - 1, bits 5-0 = type.
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

# Where a Child SPI's latest record is, packed in one small int per map
# entry (RAM): its IKE SA id, its block, its offset / 16 in that block.
_AT_IKE = const(16)  # ike_id << _AT_IKE
_AT_BLK = const(8)  # block << _AT_BLK
_AT_MASK = const(0xFF)  # block and slot are 8 bits each (MAX_BLOCKS 255, 256 slots)

# Fields of an IKE SA table entry (a list, updated in place).
_I_DEF = const(0)  # the definition: flags (1) | SPI-I (8) | SPI-R (8) | address (16), or None until read
_I_REFS = const(1)  # Child SAs whose latest record names it
_I_BLK = const(2)  # block of its CHILD_NEW
# Fields of a secret generation entry, and of the boot counter.
_G_SECRET = const(0)
_G_BLK = const(1)  # block of its SECRET (of the BOOT for the boot counter), -1 if none


# Damage reports of the records' meaning (qcd.log has the others and says
# how they are shown): (code, args...).
_D_UNKNOWN = const(11)  # (block, offset, type): unknown record type, skipped
_D_LENGTH = const(12)  # (block, offset, type, length): known type, wrong length, skipped
_D_IKE_ID = const(13)  # (block, offset, IKE SA id): above any a writer allocates, skipped
_D_SECRETS = const(14)  # (block, offset, generation dropped): more than MAX_GENERATIONS live
_D_OVER_CAP = const(15)  # (cap, evicted): more Child SAs than the cap, evicted while reading
_D_LOST = const(16)  # (Child SPI,): its IKE SA record is lost, entry dropped


def _at(ike, blk, slot):
    return (ike << _AT_IKE) | (blk << _AT_BLK) | slot


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
    The log itself is self.log (qcd.log.Log: blocks, counters, damage).
    """

    def __init__(self, dev, rng=None, max_children=DEFAULT_MAX_CHILDREN, initial_secret=None, count_boot=True, readonly=False):
        self.dev = dev
        self.readonly = bool(readonly)
        self.log = lg = _log.Log(dev, self.readonly)
        n = self.blocks = lg.blocks
        self._rng = rng
        fit = (n - 1 - _log.RESERVE) * (BLOCK_SIZE - _log.HEADER_LEN) // 2 // 48
        self.max_children = max(1, min(int(max_children), fit))
        # IKE SA ids a writer can have allocated: the lowest unused one, so
        # never above the number of Child SAs it held (the cap, or the
        # default cap of a writer that had a higher one). Larger ids on
        # flash are damage: skipped, which bounds the IKE SA table.
        self._ike_limit = max(self.max_children, DEFAULT_MAX_CHILDREN)
        self._children = {}  # spi -> _at(IKE SA id, block, slot) of its latest record
        self._ike = {}  # ike_id -> [_I_DEF, _I_REFS, _I_BLK]
        self._ike_by_def = {}  # definition -> ike_id
        self._secrets = {}  # generation -> [_G_SECRET, _G_BLK]
        self._secret_list = []  # secrets, newest generation first (keys.py order)
        self._boot = [0, -1]  # [count, _G_BLK]
        self.boot_count = 0
        self._max_gen = 0
        self.fresh_secret = ""  # why this boot created a secret ("" if it did not)
        self.evicted = 0
        self._mount_evicted = 0
        self._mount(initial_secret, count_boot)

    # -- the keys.py interface ------------------------------------------------------

    def secrets(self):
        return self._secret_list

    def child_get(self, spi):
        v = self._children.get(spi)
        if v is None:
            return None
        # the IKE SA definition -> the keys.py map entry
        d = self._ike[v >> _AT_IKE][_I_DEF]
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
        if cur is not None and ike is not None and cur >> _AT_IKE == ike:
            return
        self.log.writable()
        if ike is None:
            ike = 0
            while ike in self._ike:
                ike += 1
            blk = self._append(_child_rec(spi, ike, d))
            self._ike[ike] = [d, 0, blk]
            self._ike_by_def[d] = ike
        else:
            blk = self._append(_child_rec(spi, ike))
        self._child_set(spi, ike, blk, self.log.last_slot)
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
        self.log.writable()
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
            d = e[_I_DEF]
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
            if self._secrets[g][_G_SECRET] == secret:
                raise ValueError("that secret is already held (%s)" % fingerprint(secret))
        if len(self._secrets) >= MAX_GENERATIONS:
            raise ValueError("the store holds %d secrets, its maximum: retire one first" % MAX_GENERATIONS)
        self.log.writable()
        self._add_secret(secret)
        return fingerprint(secret)

    def retire(self, fp):
        """Forget the secret with fingerprint `fp` (never the current one).
        True when done; ValueError saying why when not (the current secret,
        or no secret with that fingerprint: the ones held are named)."""
        cur = max(self._secrets) if self._secrets else -1
        for g in self._secrets:
            if fingerprint(self._secrets[g][_G_SECRET]) == fp:
                if g == cur:
                    raise ValueError("%s is the current secret: roll over to a new one first" % fp)
                self.log.writable()
                self._append(_rec(_T_RETIRE, g))
                del self._secrets[g]
                self._sort_secrets()
                return True
        raise ValueError("no secret with fingerprint %r here (held: %s)" % (fp, ", ".join(fingerprint(s) for s in self.secrets()) or "none"))

    # -- diagnostics ------------------------------------------------------------------

    def status(self):
        """What the partition holds and what happened to it; never a secret."""
        lg = self.log
        gens = sorted(self._secrets, reverse=True)
        more = lg.damage_count - len(lg.damage)
        return {
            "format": _log.VERSION,
            "blocks": self.blocks,
            "generations": ["gen %d %s%s" % (g, fingerprint(self._secrets[g][_G_SECRET]), " (current)" if g == gens[0] else "") for g in gens],
            "secrets": [fingerprint(s) for s in self._secret_list],
            "boot_count": self.boot_count,
            "child_map": len(self._children),
            "child_cap": self.max_children,
            "ike_sas": len(self._ike),
            "evicted": self.evicted,
            "fresh_secret": self.fresh_secret or "no",
            "damage": lg.damage,  # (code, args...): qcdtool DAMAGE says what each is
            "damage_more": more,
            "damage_count": lg.damage_count,
            "block_state": lg.block_status(),
            "head": ("block %d offset %d" % (lg.head, lg.pos)) if lg.head >= 0 else "none (the next write opens a block)",
            "mount_read_bytes": lg.mount_read_bytes,
            "writes": lg.writes,
            "bytes_written": lg.bytes_written,
            "erases": lg.erases,
            "compactions": lg.compactions,
            "write_errors": lg.write_errors,
            "readonly": lg.readonly_reason or "no",
        }

    def block_info(self, b):
        """(state, seq or -1, erase estimate or -1, bytes used) of block b."""
        lg = self.log
        return (lg.state[b], lg.seq[b], lg.erase_est[b], lg.used[b])

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
            self._ike[old >> _AT_IKE][_I_REFS] -= 1
        self._children[spi] = _at(ike, blk, slot)
        e = self._ike.get(ike)
        if e is None:
            e = [None, 0, -1]
            self._ike[ike] = e
        e[_I_REFS] += 1

    def _child_del(self, spi):
        old = self._children.pop(spi, None)
        if old is not None:
            self._ike[old >> _AT_IKE][_I_REFS] -= 1

    def _append(self, rec, drop=None):
        return self.log.append(rec, self, drop)

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
        dead = [i for i in self._ike if self._ike[i][_I_REFS] <= 0]
        for i in dead:
            d = self._ike.pop(i)[_I_DEF]
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
        self._secret_list = [self._secrets[g][_G_SECRET] for g in gens]

    def _evict(self, write=True):
        # The entry written longest ago: the oldest record in log order.
        # write=False (replay): only from RAM; every mount decides the same.
        order = self.log.order()
        victim = None
        best = None
        for spi in self._children:
            v = self._children[spi]
            k = (order.get((v >> _AT_BLK) & _AT_MASK, -1), v & _AT_MASK)
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

    # -- compaction (qcd.log calls these) ----------------------------------------------

    def _live_bytes(self, b):
        # An upper bound of what compacting block b writes.
        n = 0
        for spi in self._children:
            if (self._children[spi] >> _AT_BLK) & _AT_MASK == b:
                n += 16
        for i in self._ike:
            if self._ike[i][_I_BLK] == b:
                n += 48
        for g in self._secrets:
            if self._secrets[g][_G_BLK] == b:
                n += 48
        if self._boot[_G_BLK] == b:
            n += 16
        return n

    def _copies(self, gc, drop):
        # The live items whose latest record is in one of the blocks gc
        # (FORMAT.md, Compaction), as records to write again: an IKE SA whose
        # CHILD_NEW is there goes with one of its Child SAs; Child SPI `drop`
        # is left out if its record is there (it is being dropped). The
        # records come one at a time (_copy_recs), not as a list of them
        # all: a whole-log compaction at boot would hold every live record
        # at once. `ikes` is filled as they are made.
        v = self._children.get(drop) if drop is not None else None
        skip = drop if v is not None and (v >> _AT_BLK) & _AT_MASK in gc else None
        ikes = []
        return self._copy_recs(gc, skip, ikes), ikes, skip is not None

    def _copy_recs(self, gc, skip, ikes):
        # (record, Child SPI or None) for each item _copies names, in order.
        for spi in self._children:
            if spi == skip:
                continue
            v = self._children[spi]
            ike = v >> _AT_IKE
            e = self._ike[ike]
            if e[_I_BLK] in gc and ike not in ikes:
                ikes.append(ike)
                yield _child_rec(spi, ike, e[_I_DEF]), spi
            elif (v >> _AT_BLK) & _AT_MASK in gc:
                yield _child_rec(spi, ike), spi
        for g in self._secrets:
            if self._secrets[g][_G_BLK] in gc:
                yield _rec(_T_SECRET, g, self._secrets[g][_G_SECRET]), None
        if self._boot[_G_BLK] in gc:
            yield _rec(_T_BOOT, self._boot[0]), None

    def _moved(self, gc, h, slots, ikes):
        # The copies are on flash in block h: RAM follows.
        for spi in slots:
            self._children[spi] = _at(self._children[spi] >> _AT_IKE, h, slots[spi])
        for i in ikes:
            self._ike[i][_I_BLK] = h
        for g in self._secrets:
            if self._secrets[g][_G_BLK] in gc:
                self._secrets[g][_G_BLK] = h
        if self._boot[_G_BLK] in gc:
            self._boot[_G_BLK] = h

    # -- mount ---------------------------------------------------------------------------

    def _mount(self, initial_secret, count_boot):
        lg = self.log
        lg.mount(self)
        self._finish_replay()
        self._sort_secrets()
        # This boot counts only if it is recorded (not for tools that only look).
        self.boot_count = self._boot[0] + (1 if count_boot and not self.readonly and self._boot[0] < _U32 else 0)
        if self.readonly:
            return
        try:
            if not self._secrets:
                if not lg.chain:
                    why = "blank partition (no valid block header)" if not lg.damage_count else "no readable log"
                else:
                    why = "no secret record in the log"
                if lg.damage_count:
                    why += "; %d damage(s) found" % lg.damage_count
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
            if not lg.readonly_reason:
                lg.readonly_reason = "writes fail (errno %d)" % _log.errno(e)
            if not self._secrets:
                self._secrets[self._max_gen + 1 if self._max_gen < _U32 else 1] = [self._random_secret(), -1]
                self._sort_secrets()
                self.fresh_secret = (self.fresh_secret or "no secret") + "; held in RAM only (the partition takes no writes)"

    def _apply(self, rec, pos, typ, ln, b):
        # A valid record (its bytes in rec, from index 0) at offset pos of
        # block b, in log order (FORMAT.md, Record types; Reading, step 2 for
        # the bounds).
        lg = self.log
        want = _LENGTHS.get(typ)
        if want != ln:
            # Skipped: a newer writer's record, or a known one of another length.
            if want is None:
                lg.note(_D_UNKNOWN, b, pos, typ)
            else:
                lg.note(_D_LENGTH, b, pos, typ, ln)
            return
        v = _log.u32(rec, 4)
        if typ == _T_CHILD or typ == _T_CHILD_NEW:
            ike = struct.unpack_from("<H", rec, 2)[0]
            if ike > self._ike_limit:
                lg.note(_D_IKE_ID, b, pos, ike)
                return
            if typ == _T_CHILD_NEW:
                d = bytes(rec[1:2]) + bytes(rec[8:40])
                e = self._ike.get(ike)
                if e is None:
                    self._ike[ike] = [d, 0, b]
                else:
                    e[_I_DEF] = d
                    e[_I_BLK] = b
            self._child_set(v, ike, b, pos // _log.CHUNK)
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
                    lg.note(_D_SECRETS, b, pos, min(low, v))
                    if v < low:
                        return
                    del self._secrets[low]
                self._secrets[v] = [bytes(rec[8:40]), b]
            else:
                self._secrets.pop(v, None)
            if v > self._max_gen:
                self._max_gen = v

    def _finish_replay(self):
        lg = self.log
        if self._mount_evicted:
            lg.note(_D_OVER_CAP, self.max_children, self._mount_evicted)
        # Children whose IKE SA definition never appeared cannot be answered
        # for: damage (their CHILD_NEW record was lost).
        lost = []
        for spi in self._children:
            if self._ike[self._children[spi] >> _AT_IKE][_I_DEF] is None:
                lost.append(spi)
        for spi in lost:
            lg.note(_D_LOST, spi)
            self._child_del(spi)
        self._prune_ike()
        for i in self._ike:
            self._ike_by_def[self._ike[i][_I_DEF]] = i
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


def mount(dev, rng=None, **kw):
    """Mount the qcd partition on `dev`: a Store (see its docstring)."""
    return Store(dev, rng, **kw)

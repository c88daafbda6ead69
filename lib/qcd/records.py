# qcd.records: what the records of the `qcd` partition mean (docs/FORMAT.md,
# Record types): secret generations, the Child SPI map and its IKE SA table,
# the boot counter; which live records a compaction copies; what a mount
# makes of what it read. qcd.log (blocks, the record frame, appending,
# compaction, the mount scan) calls back into it:
#
#   _apply(st, rec, pos, typ, ln, blk)   a valid record, in log order (mount)
#   _live_bytes(st, blk)                 upper bound of what compacting blk writes
#   _copies(st, gc, drop)                the records to copy out of the blocks in gc
#   _moved(st, gc, h, slots, token)      the copies are committed in block h
#
# Functions over a qcd.store.Store `st`, which holds all the state (this
# module holds none): the mount, the writes and status(). qcd.store loads
# this module (and qcd.log) to run one of them; the firmware app's store
# drops both again afterwards (Store(unload=True)): a board that loads .mpy
# keeps only the state and the reads in its heap between the rare writes.
# RAM is bounded by the caps (qcd.store's header): the map (at most cap + 1
# while reading), the IKE SA table, at most MAX_GENERATIONS secrets.

import struct

from qcd import log as _log
from qcd.store import MAX_GENERATIONS, gen_tag
from qcd.tokens import SECRET_LEN, check_secret, fingerprint

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


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


def _child_rec(spi, ike, d=None):
    # CHILD_NEW (with the IKE SA definition d: flags | SPI-I | SPI-R | address)
    # or, when the IKE SA is already on flash, the 16-byte CHILD.
    if d is None:
        return _rec(_T_CHILD, spi, b"", 0, ike)
    return _rec(_T_CHILD_NEW, spi, d[1:33], d[0], ike)


def child_put(st, spi, spi_i, spi_r, initiator, peer_ip, gen=0):
    """Persist Child SPI -> (parent IKE SA, our role, peer address, and
    the secret generation of the IKE SA's token, 0 if not known).
    Nothing is written when the entry is already there."""
    if not isinstance(spi, int) or not 0 <= spi <= 0xFFFFFFFF:
        raise ValueError("a Child SPI is a 32-bit unsigned int")
    if len(spi_i) != 8 or len(spi_r) != 8:
        raise ValueError("IKE SPIs are 8 bytes")
    if len(peer_ip) != 4 and len(peer_ip) != 16:
        raise ValueError("a peer address is 4 or 16 bytes")
    flags = (_F_INITIATOR if initiator else 0) | (_F_IPV6 if len(peer_ip) == 16 else 0) | (gen_tag(gen) << _GEN_SHIFT)
    d = bytes([flags]) + bytes(spi_i) + bytes(spi_r) + bytes(peer_ip) + bytes(16 - len(peer_ip))
    cur = st._children.get(spi)
    ike = st._ike_by_def.get(d)
    if cur is not None and ike is not None and cur >> _AT_IKE == ike:
        return
    _log.writable(st.log)
    if ike is None:
        ike = 0
        while ike in st._ike:
            ike += 1
        blk = _append(st, _child_rec(spi, ike, d))
        st._ike[ike] = [d, 0, blk]
        st._ike_by_def[d] = ike
    else:
        blk = _append(st, _child_rec(spi, ike))
    _child_set(st, spi, ike, blk, st.log.last_slot)
    _prune_ike(st)
    # At the cap, the entry written longest ago goes, after the new one
    # is on flash: a cut in between leaves one entry too many, and the
    # next mount evicts the same one (the oldest record) to finish it.
    if cur is None:
        try:
            while len(st._children) > st.max_children:
                _evict(st)
        except OSError:
            pass  # the put itself is on flash; the next eviction or mount catches up


def child_drop(st, spi):
    if spi not in st._children:
        return
    _log.writable(st.log)
    _drop(st, spi)


def rollover(st, secret=None):
    """Add a new current secret (from the RNG unless given); older ones
    stay until retired (RFC 6290 §5: tokens of SAs made with them must
    stay valid). Returns its fingerprint."""
    secret = _random_secret(st) if secret is None else check_secret(secret)
    for g in st._secrets:
        if st._secrets[g][_G_SECRET] == secret:
            raise ValueError("that secret is already held (%s)" % fingerprint(secret))
    if len(st._secrets) >= MAX_GENERATIONS:
        raise ValueError("the store holds %d secrets, its maximum: retire one first" % MAX_GENERATIONS)
    _log.writable(st.log)
    _add_secret(st, secret)
    return fingerprint(secret)


def retire(st, fp):
    """Forget the secret with fingerprint `fp` (never the current one).
    True when done; ValueError saying why when not (the current secret,
    or no secret with that fingerprint: the ones held are named)."""
    cur = max(st._secrets) if st._secrets else -1
    for g in st._secrets:
        if fingerprint(st._secrets[g][_G_SECRET]) == fp:
            if g == cur:
                raise ValueError("%s is the current secret: roll over to a new one first" % fp)
            _log.writable(st.log)
            _append(st, _rec(_T_RETIRE, g))
            del st._secrets[g]
            _sort_secrets(st)
            return True
    raise ValueError("no secret with fingerprint %r here (held: %s)" % (fp, ", ".join(fingerprint(s) for s in st.secrets()) or "none"))


def status(st):
    """What the partition holds and what happened to it; never a secret."""
    lg = st.log
    gens = sorted(st._secrets, reverse=True)
    more = lg.damage_count - len(lg.damage)
    return {
        "format": _log.VERSION,
        "blocks": st.blocks,
        "generations": ["gen %d %s%s" % (g, fingerprint(st._secrets[g][_G_SECRET]), " (current)" if g == gens[0] else "") for g in gens],
        "secrets": [fingerprint(s) for s in st._secret_list],
        "boot_count": st.boot_count,
        "child_map": len(st._children),
        "child_cap": st.max_children,
        "ike_sas": len(st._ike),
        "evicted": st.evicted,
        "fresh_secret": st.fresh_secret or "no",
        "damage": lg.damage,  # (code, args...): qcdtool DAMAGE says what each is
        "damage_more": more,
        "damage_count": lg.damage_count,
        "block_state": _log.block_status(lg),
        "head": ("block %d offset %d" % (lg.head, lg.pos)) if lg.head >= 0 else "none (the next write opens a block)",
        "mount_read_bytes": lg.mount_read_bytes,
        "writes": lg.writes,
        "bytes_written": lg.bytes_written,
        "erases": lg.erases,
        "compactions": lg.compactions,
        "write_errors": lg.write_errors,
        "readonly": lg.readonly_reason or "no",
    }


def _child_set(st, spi, ike, blk, slot):
    old = st._children.get(spi)
    if old is not None:
        st._ike[old >> _AT_IKE][_I_REFS] -= 1
    st._children[spi] = _at(ike, blk, slot)
    e = st._ike.get(ike)
    if e is None:
        e = [None, 0, -1]
        st._ike[ike] = e
    e[_I_REFS] += 1


def _child_del(st, spi):
    old = st._children.pop(spi, None)
    if old is not None:
        st._ike[old >> _AT_IKE][_I_REFS] -= 1


def _append(st, rec, drop=None):
    return _log.append(st.log, rec, st, drop)


def _drop(st, spi):
    # DROP on flash, then out of RAM. If the DROP needs a new block and
    # opening it compacts the block holding the entry's latest record,
    # the entry is simply not copied and no DROP is needed: the drop
    # lands with the new block's header, in one program (an eviction
    # must not copy its victim forward first: FORMAT.md, At the map's cap).
    _append(st, _rec(_T_DROP, spi), spi)
    _child_del(st, spi)
    _prune_ike(st)


def _prune_ike(st):
    # An IKE SA with no Child SA left is forgotten; its id may be reused
    # (a later CHILD_NEW record redefines it).
    dead = [i for i in st._ike if st._ike[i][_I_REFS] <= 0]
    for i in dead:
        d = st._ike.pop(i)[_I_DEF]
        if d is not None and st._ike_by_def.get(d) == i:
            del st._ike_by_def[d]


def _next_gen(st):
    # One more than any generation seen (FORMAT.md, Limits): above every
    # live one. At the end of the u32 range: one more than the newest live
    # generation, or 1 when none is live; none if the newest live is
    # already 0xFFFFFFFF (a rollover is then refused).
    if st._max_gen < _U32:
        return st._max_gen + 1
    cur = max(st._secrets) if st._secrets else 0
    return cur + 1 if cur < _U32 else -1


def _add_secret(st, secret):
    gen = _next_gen(st)
    if gen < 0:
        raise ValueError("secret generations exhausted (the current one is 0xFFFFFFFF): erase the partition and provision it again")
    blk = _append(st, _rec(_T_SECRET, gen, secret))
    st._secrets[gen] = [secret, blk]
    if gen > st._max_gen:
        st._max_gen = gen
    _sort_secrets(st)


def _sort_secrets(st):
    gens = sorted(st._secrets, reverse=True)
    st._secret_list = [st._secrets[g][_G_SECRET] for g in gens]


def _evict(st, write=True):
    # The entry written longest ago: the oldest record in log order.
    # write=False (replay): only from RAM; every mount decides the same.
    order = _log.order(st.log)
    victim = None
    best = None
    for spi in st._children:
        v = st._children[spi]
        k = (order.get((v >> _AT_BLK) & _AT_MASK, -1), v & _AT_MASK)
        if best is None or k < best:
            best = k
            victim = spi
    if write:
        _drop(st, victim)
    else:
        _child_del(st, victim)
    st.evicted += 1


def _random_secret(st):
    rng = st._rng
    if rng is None:
        import os

        rng = getattr(os, "urandom", None)
        if rng is None:
            raise ValueError("no os.urandom here: give the store an rng")
    return check_secret(bytes(rng(SECRET_LEN)))


def _live_bytes(st, b):
    # An upper bound of what compacting block b writes.
    n = 0
    for spi in st._children:
        if (st._children[spi] >> _AT_BLK) & _AT_MASK == b:
            n += 16
    for i in st._ike:
        if st._ike[i][_I_BLK] == b:
            n += 48
    for g in st._secrets:
        if st._secrets[g][_G_BLK] == b:
            n += 48
    if st._boot[_G_BLK] == b:
        n += 16
    return n


def _copies(st, gc, drop):
    # The live items whose latest record is in one of the blocks gc
    # (FORMAT.md, Compaction), as records to write again: an IKE SA whose
    # CHILD_NEW is there goes with one of its Child SAs; Child SPI `drop`
    # is left out if its record is there (it is being dropped). The
    # records come one at a time (_copy_recs), not as a list of them
    # all: a whole-log compaction at boot would hold every live record
    # at once. `ikes` is filled as they are made.
    v = st._children.get(drop) if drop is not None else None
    skip = drop if v is not None and (v >> _AT_BLK) & _AT_MASK in gc else None
    ikes = []
    return _copy_recs(st, gc, skip, ikes), ikes, skip is not None


def _copy_recs(st, gc, skip, ikes):
    # (record, Child SPI or None) for each item _copies names, in order.
    for spi in st._children:
        if spi == skip:
            continue
        v = st._children[spi]
        ike = v >> _AT_IKE
        e = st._ike[ike]
        if e[_I_BLK] in gc and ike not in ikes:
            ikes.append(ike)
            yield _child_rec(spi, ike, e[_I_DEF]), spi
        elif (v >> _AT_BLK) & _AT_MASK in gc:
            yield _child_rec(spi, ike), spi
    for g in st._secrets:
        if st._secrets[g][_G_BLK] in gc:
            yield _rec(_T_SECRET, g, st._secrets[g][_G_SECRET]), None
    if st._boot[_G_BLK] in gc:
        yield _rec(_T_BOOT, st._boot[0]), None


def _moved(st, gc, h, slots, ikes):
    # The copies are on flash in block h: RAM follows.
    for spi in slots:
        st._children[spi] = _at(st._children[spi] >> _AT_IKE, h, slots[spi])
    for i in ikes:
        st._ike[i][_I_BLK] = h
    for g in st._secrets:
        if st._secrets[g][_G_BLK] in gc:
            st._secrets[g][_G_BLK] = h
    if st._boot[_G_BLK] in gc:
        st._boot[_G_BLK] = h


def mount(st, initial_secret, count_boot):
    # The mount (Store() runs it): replay the log into st, then what a
    # writable mount adds (a fresh secret, the boot record).
    lg = st.log
    _log.mount(lg, st)
    _finish_replay(st)
    _sort_secrets(st)
    # This boot counts only if it is recorded (not for tools that only look).
    st.boot_count = st._boot[0] + (1 if count_boot and not st.readonly and st._boot[0] < _U32 else 0)
    if st.readonly:
        return
    try:
        if not st._secrets:
            if not lg.chain:
                why = "blank partition (no valid block header)" if not lg.damage_count else "no readable log"
            else:
                why = "no secret record in the log"
            if lg.damage_count:
                why += "; %d damage(s) found" % lg.damage_count
            if initial_secret is not None:
                _add_secret(st, check_secret(initial_secret))
                why += "; given secret written"
            else:
                _add_secret(st, _random_secret(st))
            st.fresh_secret = why
        if count_boot:
            st._boot = [st.boot_count, _append(st, _rec(_T_BOOT, st.boot_count))]
    except OSError as e:
        # Never brick: whatever we hold stays usable from RAM.
        if not lg.readonly_reason:
            lg.readonly_reason = "writes fail (errno %d)" % _log.errno(e)
        if not st._secrets:
            st._secrets[st._max_gen + 1 if st._max_gen < _U32 else 1] = [_random_secret(st), -1]
            _sort_secrets(st)
            st.fresh_secret = (st.fresh_secret or "no secret") + "; held in RAM only (the partition takes no writes)"


def _apply(st, rec, pos, typ, ln, b):
    # A valid record (its bytes in rec, from index 0) at offset pos of
    # block b, in log order (FORMAT.md, Record types; Reading, step 2 for
    # the bounds).
    lg = st.log
    want = _LENGTHS.get(typ)
    if want != ln:
        # Skipped: a newer writer's record, or a known one of another length.
        if want is None:
            _log.note(lg, _D_UNKNOWN, b, pos, typ)
        else:
            _log.note(lg, _D_LENGTH, b, pos, typ, ln)
        return
    v = _log.u32(rec, 4)
    if typ == _T_CHILD or typ == _T_CHILD_NEW:
        ike = struct.unpack_from("<H", rec, 2)[0]
        if ike > st._ike_limit:
            _log.note(lg, _D_IKE_ID, b, pos, ike)
            return
        if typ == _T_CHILD_NEW:
            d = bytes(rec[1:2]) + bytes(rec[8:40])
            e = st._ike.get(ike)
            if e is None:
                st._ike[ike] = [d, 0, b]
            else:
                e[_I_DEF] = d
                e[_I_BLK] = b
        _child_set(st, v, ike, b, pos // _log.CHUNK)
        if len(st._children) > st.max_children + 1:
            # More than a writer ever leaves (the cap, plus a put whose
            # eviction a cut interrupted): RAM stays bounded by the cap.
            _evict(st, False)
            st._mount_evicted += 1
    elif typ == _T_DROP:
        _child_del(st, v)
    elif typ == _T_BOOT:
        st._boot = [v, b]
    else:
        if typ == _T_SECRET:
            if v not in st._secrets and len(st._secrets) >= MAX_GENERATIONS:
                # More live generations than a writer allows: keep the
                # newest MAX_GENERATIONS (RAM stays bounded).
                low = min(st._secrets)
                _log.note(lg, _D_SECRETS, b, pos, min(low, v))
                if v < low:
                    return
                del st._secrets[low]
            st._secrets[v] = [bytes(rec[8:40]), b]
        else:
            st._secrets.pop(v, None)
        if v > st._max_gen:
            st._max_gen = v


def _finish_replay(st):
    lg = st.log
    if st._mount_evicted:
        _log.note(lg, _D_OVER_CAP, st.max_children, st._mount_evicted)
    # Children whose IKE SA definition never appeared cannot be answered
    # for: damage (their CHILD_NEW record was lost).
    lost = []
    for spi in st._children:
        if st._ike[st._children[spi] >> _AT_IKE][_I_DEF] is None:
            lost.append(spi)
    for spi in lost:
        _log.note(lg, _D_LOST, spi)
        _child_del(st, spi)
    _prune_ike(st)
    for i in st._ike:
        st._ike_by_def[st._ike[i][_I_DEF]] = i
    if lost and not st.readonly:
        # Make the drops durable, so a reused IKE SA id cannot revive them.
        try:
            for spi in lost:
                _append(st, _rec(_T_DROP, spi))
        except OSError:
            pass
    while len(st._children) > st.max_children:
        if st.readonly:
            break
        try:
            _evict(st)
        except OSError:
            break

# Power-cut torture for qcd.store on qcdhost.emu.flash (CPython and MicroPython).
#
# One sweep: a partition is written to a random state (the warm-up, no cuts),
# a random workload of map updates, secret rollovers and retirements and
# reboots is drawn, run once without a cut to count its flash operations, and
# then run again from the same starting image once per cut point, the power
# cut at that program or erase operation (the emulator tears it). After each
# cut the device reboots (a new emulator on the same image, a new mount) and
# we check what issue 3 asks:
#   - the secrets are exactly those acknowledged before the interrupted
#     operation, or (if that operation was a rollover or retirement) exactly
#     those after it: the secret is never lost and changes only by rollover;
#   - the Child SPI map likewise: every acknowledged update is there, the
#     interrupted one wholly there or wholly absent, nothing else;
#   - the boot counter went up by one (or two, if the cut hit a mount after
#     its boot record landed);
#   - the store stays writable: a few more updates and a reboot, checked again;
#   - the emulator saw no NOR or flash-encryption violation, and no program
#     over bytes that were not erased.
# Variants: a worn block; a small map cap (evictions); puts at the cap whose
# eviction DROP has to open (and compact into) a new block (cap_drop, issue
# 13 §5); and flash whose torn programs and erases leave bits that read back
# unstable (unstable, flashemu's model of real NOR).
# A failure raises TortureFailure naming the seed and cut, so it can be re-run.

import hashlib

from qcdhost.emu import flash as flashemu
from qcd.store import BLOCK_SIZE, MAX_GENERATIONS, Store
from qcd.tokens import fingerprint


class TortureFailure(AssertionError):
    pass


class Rand:
    # Independent streams: a label and a number name one.
    def __init__(self, label, n=0):
        self.r = flashemu._Rand(int.from_bytes(hashlib.sha256(label + b"/%d" % n).digest()[:6], "big"))

    def below(self, n):
        return self.r.below(n)

    def bytes(self, n):
        return self.r.bytes(n)


def det_rng(seed):
    r = flashemu._Rand(seed + 99991)
    return r.bytes


class Oracle:
    __slots__ = ("secrets", "children", "boot")

    def __init__(self, secrets=(), children=None, boot=0):
        self.secrets = list(secrets)
        self.children = dict(children or {})
        self.boot = boot

    def copy(self):
        return Oracle(self.secrets, self.children, self.boot)

    def apply(self, op):
        k = op[0]
        if k == "put":
            self.children[op[1]] = (op[2], op[3], op[4], op[5])
        elif k == "drop":
            self.children.pop(op[1], None)
        elif k == "roll":
            self.secrets.insert(0, op[1])
        elif k == "retire":
            for i in range(1, len(self.secrets)):
                if fingerprint(self.secrets[i]) == op[1]:
                    del self.secrets[i]
                    break
        elif k == "reboot":
            self.boot += 1


class Ops:
    """A workload's operations, packed: 7 bytes each in 448-byte chunks, the
    arguments (a put's IKE SA entry, a secret, a fingerprint) kept once each
    in a table. A cap_drop workload is about a thousand puts; as a list of
    tuples, each with its own bytes, it takes over 100 KB of a board's heap.
    ops[i] gives the op back as a tuple: ("put", spi, spi_i, spi_r,
    initiator, ip), ("drop", spi), ("roll", secret), ("retire",
    fingerprint) or ("reboot",)."""

    KINDS = ("put", "drop", "roll", "retire", "reboot")
    PER_CHUNK = 64

    def __init__(self, ops=()):
        self.vals = []
        self.index = {}
        self.chunks = []
        self.n = 0
        self.extend(ops)

    def __len__(self):
        return self.n

    def extend(self, ops):
        for op in ops:
            self.append(op)

    def append(self, op):
        k = self.KINDS.index(op[0])
        spi = op[1] if k <= 1 else 0
        val = tuple(op[2:]) if k == 0 else op[1:2] if k in (2, 3) else None
        v = 0
        if val is not None:
            key = (k,) + val  # a secret (bytes) and a fingerprint (str) never compared
            v = self.index.get(key)
            if v is None:
                v = self.index[key] = len(self.vals)
                self.vals.append(val)
        if self.n % self.PER_CHUNK == 0:
            self.chunks.append(bytearray(7 * self.PER_CHUNK))
        c = self.chunks[-1]
        j = 7 * (self.n % self.PER_CHUNK)
        c[j] = k
        c[j + 1 : j + 5] = spi.to_bytes(4, "big")
        c[j + 5 : j + 7] = v.to_bytes(2, "big")
        self.n += 1

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        c = self.chunks[i // self.PER_CHUNK]
        j = 7 * (i % self.PER_CHUNK)
        k = c[j]
        if k == 4:
            return ("reboot",)
        v = int.from_bytes(c[j + 5 : j + 7], "big")
        if k == 0:
            return ("put", int.from_bytes(c[j + 1 : j + 5], "big")) + self.vals[v]
        if k == 1:
            return ("drop", int.from_bytes(c[j + 1 : j + 5], "big"))
        return (self.KINDS[k],) + self.vals[v]


def do(store, op, emu_factory, cap=None):
    """Run one workload operation; returns the (possibly new) store."""
    k = op[0]
    if k == "put":
        store.child_put(op[1], op[2], op[3], op[4], op[5])
    elif k == "drop":
        store.child_drop(op[1])
    elif k == "roll":
        store.rollover(op[1])
    elif k == "retire":
        store.retire(op[1])
    elif k == "reboot":
        store = Store(emu_factory(), det_rng(0), max_children=cap or 64)
    return store


def reconcile(o, op, store, cap):
    """After a put at the cap the store evicted the entry written longest
    ago: check it dropped exactly one other entry, and follow it. Returns the
    evicted Child SPI or None."""
    if len(o.children) <= cap:
        return None
    gone = [spi for spi in o.children if store.child_get(spi) is None]
    if len(gone) != 1 or gone[0] == op[1]:
        raise TortureFailure("at the cap, a put of %08x evicted %s" % (op[1], gone))
    del o.children[gone[0]]
    return gone[0]


def _ike(r, n_ike):
    i = r.below(n_ike)
    h = hashlib.sha256(b"ike %d" % i).digest()
    ip = h[16:20] if i % 3 else h[16:32]
    return h[0:8], h[8:16], bool(i & 1), ip


def make_ops(label, seed, oracle, n, cap, reboots=True, evict=False):
    """n workload operations drawn for the state `oracle` (not changed).
    evict: new Child SAs also at the cap (the store then evicts)."""
    r = Rand(label, seed)
    o = oracle.copy()
    ops = []
    n_ike = 3 + r.below(6)
    while len(ops) < n:
        x = r.below(100)
        live = sorted(o.children)
        if x < 40 and (evict or len(live) < cap - 6):
            spi_i, spi_r, init, ip = _ike(r, n_ike)
            op = ("put", 0x1000 + r.below(0xFFFFF000), spi_i, spi_r, init, ip)
        elif x < 55 and live:
            # a Child SA moves to another IKE SA (an IKE SA rekey), or is re-put unchanged
            spi = live[r.below(len(live))]
            spi_i, spi_r, init, ip = _ike(r, n_ike)
            op = ("put", spi, spi_i, spi_r, init, ip)
        elif x < 85 and live:
            op = ("drop", live[r.below(len(live))])
        elif x < 89 and len(o.secrets) < MAX_GENERATIONS - 1:
            op = ("roll", r.bytes(32))
        elif x < 93 and len(o.secrets) > 1:
            op = ("retire", fingerprint(o.secrets[1 + r.below(len(o.secrets) - 1)]))
        elif x < 97 and reboots:
            op = ("reboot",)
        else:
            continue
        ops.append(op)
        o.apply(op)
    return ops


def _same_map(store, children):
    if store.child_count() != len(children):
        return False
    for spi in children:
        if store.child_get(spi) != children[spi]:
            return False
    return True


def check(store, want, label, alt=None):
    """The store holds exactly `want` (or `alt`); returns the one it holds.
    The map is compared entry by entry (child_get), without a copy of it."""
    got_s = list(store.secrets())
    for o in (want, alt):
        if o is not None and got_s == o.secrets and _same_map(store, o.children):
            return o
    got_c = dict(store.children())  # only to say what differs

    def diff(o):
        extra = [s for s in got_c if s not in o.children or got_c[s] != o.children[s]]
        miss = [s for s in o.children if s not in got_c]
        return "secrets %s vs %s; map extra/changed %s missing %s" % (
            [fingerprint(s) for s in got_s], [fingerprint(s) for s in o.secrets], extra[:4], miss[:4])
    raise TortureFailure("%s: store state matches neither; before: %s; after: %s; status: %s" % (
        label, diff(want), diff(alt) if alt is not None else "-", store.status()["damage"]))


def warm(seed, blocks, encrypted, ops=None, cap=None):
    """A partition written into a random state. Returns (backing, oracle, cap)."""
    r = Rand(b"warm", seed)
    backing = flashemu.MemoryBacking(blocks * BLOCK_SIZE)
    emu = flashemu.FlashEmu(backing, encrypted=encrypted, seed=seed)
    store = Store(emu, det_rng(seed), max_children=cap or 64)
    o = Oracle(store.secrets(), {}, store.boot_count)
    cap = store.max_children
    # Fill at least a few blocks, then stop somewhere in the head's last few
    # hundred bytes, so that the workload crosses into a new block (and,
    # once the log is long enough, a compaction).
    if ops is None:
        ops = blocks * 150 + r.below(blocks * 100)
    stop = BLOCK_SIZE - 16 - r.below(400)
    i = 0
    while i < ops or store.log.pos < stop:
        for op in make_ops(b"warm-op %d" % seed, i, o, 1, cap, reboots=False):
            store = do(store, op, None)
            o.apply(op)
        i += 1
        if i > ops + 2000:
            break
    return backing, o, cap


def _held_ikes(store):
    # IKE SAs (as put arguments) the store holds, in a stable order.
    seen = []
    for spi, ent in sorted(store.children()):
        if ent not in seen:
            seen.append(ent)
    return seen


def cap_drop_ops(backing, oracle, cap, encrypted, rounds=3):
    """Ops (after the first reboot) that bring the map to its cap and then,
    `rounds` times, fill the head block until a new Child SA on a known IKE
    SA (16 bytes) fills it exactly, so that the eviction's DROP has to open a
    block, which (once the log is long) compacts the oldest block, the one
    holding the victim. Found by running the store (the runs are
    deterministic). Returns (ops, oracle after them, rounds whose DROP
    opened a compacting block)."""
    b = backing.copy()
    factory = lambda: flashemu.FlashEmu(b, encrypted=encrypted)  # noqa: E731
    o = oracle.copy()
    ops = Ops([("reboot",)])
    store = do(None, ops[0], factory, cap)
    o.apply(ops[0])
    nxt = [0x7E000000]

    def apply(op):
        st = do(store, op, factory, cap)
        ops.append(op)
        o.apply(op)
        reconcile(o, op, st, cap)
        return st

    def new_put(ent):
        nxt[0] += 1
        return ("put", nxt[0]) + tuple(ent)

    # Two IKE SAs at least, and the map at its cap.
    k = 0
    while len(_held_ikes(store)) < 2 or store.child_count() < cap:
        h = hashlib.sha256(b"cap-drop ike %d" % (k % 3)).digest()
        store = apply(new_put((h[0:8], h[8:16], bool(k & 1), h[16:20])))
        k += 1
    hit = 0
    filler = None
    for _ in range(rounds):
        for _ in range(400):
            ikes = _held_ikes(store)
            room = BLOCK_SIZE - store.log.pos if store.log.head >= 0 else 0
            if room == 16:
                break
            # A 16-byte record: the filler Child SA moved to another IKE SA
            # that has other Child SAs (so its definition is held: a CHILD,
            # not a CHILD_NEW). The filler stays the newest entry, never the
            # victim.
            cur = store.child_get(filler) if filler is not None else None
            if cur is None:
                op = new_put(ikes[0])
                filler = op[1]
            else:
                others = [e for e in ikes if e != cur and any(x == e and spi != filler for spi, x in store.children())]
                op = ("put", filler) + tuple(others[0] if others else ikes[0])
            store = apply(op)
        before = store.log.compactions
        store = apply(new_put(_held_ikes(store)[-1]))
        if store.log.compactions > before:
            hit += 1
    return ops, o, hit


def run(backing, ops, oracle, cut, seed, encrypted, cap=64, victims=None, unstable=False, work=None):
    """Run ops on a copy of backing, cutting power at global flash operation
    `cut` (None: never). Returns (backing, ops done, total flash ops, result)
    where result is None or (index of the interrupted op, oracle before it).
    victims: a dict that gets, per op index, the entry evicted at the cap.
    work: a backing of the same size to copy into (and return) instead of a
    new one, so a sweep allocates its working image once, not once a cut."""
    b = backing.copy(into=work)
    o = oracle.copy()
    total = [0]
    # Only the emulator of the current boot: an earlier one's counters and
    # violations no longer change (checked after every op while it was in
    # use), and each holds its own unstable cells on a board's heap.
    emus = []

    def factory():
        if emus:
            total[0] += emus[-1].ops
        c = None
        if cut is not None:
            c = cut - total[0]
            if c <= 0:
                c = None
        e = flashemu.FlashEmu(b, encrypted=encrypted, cut_at=c, seed=seed, unstable=unstable)
        emus[:] = [e]
        return e

    store = None
    for i in range(len(ops)):
        op = ops[i]
        before = o.copy()
        try:
            if store is None and op[0] != "reboot":
                raise TortureFailure("workload must start with a reboot")
            if op[0] == "reboot":
                store = None  # the old mount goes before the new one is made (a board's heap)
            store = do(store, op, factory, cap)
        except flashemu.PowerCut:
            return b, i, total[0] + emus[-1].ops, (i, before)
        for e in emus:
            if e.violations:
                raise TortureFailure("flash violation: %s" % e.last_violation)
        o.apply(op)
        v = reconcile(o, op, store, cap)
        if v is not None and victims is not None:
            victims[i] = v
    return b, len(ops), total[0] + (emus[-1].ops if emus else 0), None


def sweep(seed, blocks=4, encrypted=False, n_ops=60, cuts=None, stride=1, worn=False, cap=None, cap_drop=0, unstable=False, stats=None):
    """One torture sweep. Returns the number of cuts made. worn: one free
    block of the warmed partition gets bits stuck at 0 from its next erase.
    cap: a small Child SPI map cap, and a workload that runs into it.
    cap_drop: that many puts at the cap whose DROP opens a block first
    (needs cap). unstable: torn operations leave unstable bits. stats: a
    dict that gets counts (cap_drop rounds that compacted, cuts)."""
    backing, o0, cap_ = warm(seed, blocks, encrypted, cap=cap)
    evict = cap is not None
    cap = cap_
    if worn:
        e = flashemu.FlashEmu(backing)
        st = Store(e, det_rng(seed), count_boot=False, readonly=True)
        for b in range(blocks):
            if st.block_info(b)[0] != "live":
                e.readonly = False
                e.wear_out(b, e.erase_counts[b], flashemu.STUCK_BITS)
                break
        e = st = None  # that mount is not the workload's: gone before it starts
    # The start image goes into a file (flashemu.FrozenImage) and out of the
    # heap: each cut's run reads it through a working image that holds only
    # the pieces the run writes (on a board, the warmed partition in RAM
    # beside every cut's working image would not fit a 110 KiB heap).
    backing = flashemu.FrozenImage(backing, _scratch("qcd-sweep-%d.img" % seed))
    try:
        return _sweep(backing, o0, cap, evict, seed, blocks, encrypted, n_ops, cuts, stride, cap_drop, unstable, stats)
    finally:
        backing.close()


def _scratch(name):
    # A file a sweep may write: a new one in the temporary folder (CPython,
    # where sweeps run in parallel), or `name` in the current folder
    # (MicroPython: a board's filesystem, the WebAssembly port's MEMFS, the
    # unix port's working folder).
    try:
        import os
        import tempfile
    except ImportError:
        return name
    fd, path = tempfile.mkstemp(prefix=name + ".")
    os.close(fd)
    return path


def _sweep(backing, o0, cap, evict, seed, blocks, encrypted, n_ops, cuts, stride, cap_drop, unstable, stats):
    if cap_drop:
        ops, o1, hit = cap_drop_ops(backing, o0, cap, encrypted, cap_drop)
        ops.extend(make_ops(b"workload", seed, o1, n_ops, cap, evict=evict))
        if stats is not None:
            stats["cap_drop_compacting"] = stats.get("cap_drop_compacting", 0) + hit
    else:
        ops = Ops([("reboot",)] + make_ops(b"workload", seed, o0, n_ops, cap, evict=evict))
    # Dry run: how many flash operations the workload takes, and which
    # entries the store evicts at the cap.
    # Its image is the sweep's working image from then on: every cut's run
    # copies the start into it. (A board's heap would otherwise hold the dry
    # run's image, about as big as the start, for the whole sweep: the
    # tuple run() returns lingers in this frame's stack slots, which
    # MicroPython's collector scans as they are.)
    victims = {}
    work, _, k, res = run(backing, ops, o0, None, seed, encrypted, cap, victims)
    if res is not None:
        raise TortureFailure("seed %d: dry run was cut" % seed)
    points = cuts if cuts is not None else range(1 + (seed % stride), k + 1, stride)
    made = 0
    for c in points:
        label = "seed %d blocks %d %s cut %d/%d" % (seed, blocks, "encrypted" if encrypted else "plain", c, k)
        b, i, _, res = run(backing, ops, o0, c, seed * 1000 + c, encrypted, cap, unstable=unstable, work=work)
        work = b
        if res is None:
            continue  # the cut point was past the end of this run
        made += 1
        _check_cut(b, res, ops, victims, c, seed, cap, evict, label)
    if stats is not None:
        stats["cuts"] = stats.get("cuts", 0) + made
    return made


# After a cut the store must mount with what it had acknowledged, stay
# writable, and keep what it writes then across the next reboot. Each of
# the two mounts is made in a function of its own: a MicroPython frame's
# stack slots keep what they last held, and the collector scans them, so
# a mount made in the same frame as the next one would stay alive beside it
# (two mounts on a board's heap); a function's frame goes when it returns.


def _check_cut(b, res, ops, victims, c, seed, cap, evict, label):
    violation, o = _mount_after_cut(b, res, ops, victims, c, seed, cap, evict, label)
    emu2 = flashemu.FlashEmu(b, seed=c + 1)
    store = Store(emu2, det_rng(seed), max_children=cap)
    check(store, o, label + " (after more writes and a reboot)")
    if violation or emu2.violations:
        raise TortureFailure("%s: flash violation: %s" % (label, violation or emu2.last_violation))


def _mount_after_cut(b, res, ops, victims, c, seed, cap, evict, label):
    """The mount after cut c, checked against the oracles before and after
    the interrupted op, then a few more writes. Returns (its emulator's
    last flash violation or None, the oracle after those writes)."""
    idx, before = res
    after = before.copy()
    after.apply(ops[idx])
    if idx in victims:
        # the same entry goes whether the store or the next mount evicts it
        del after.children[victims[idx]]
    emu = flashemu.FlashEmu(b, seed=c)
    try:
        store = Store(emu, det_rng(seed), max_children=cap)
    except Exception as e:
        raise TortureFailure("%s: mount after the cut raised %r" % (label, e))
    held = check(store, before, label + " (op %d %s)" % (idx, ops[idx][0]), after)
    want_boot = before.boot + 1
    if ops[idx][0] == "reboot":
        ok = store.boot_count in (want_boot, want_boot + 1)
    else:
        ok = store.boot_count == want_boot
    if not ok:
        raise TortureFailure("%s: boot count %d, expected %d" % (label, store.boot_count, want_boot))
    if store.log.readonly_reason and store.log.readonly_reason != "no":
        raise TortureFailure("%s: store came up read-only: %s" % (label, store.log.readonly_reason))
    # Still writable.
    o = held.copy()
    o.boot = store.boot_count
    for op in make_ops(b"more %d" % seed, c, o, 4, cap, reboots=False, evict=evict):
        store = do(store, op, None, cap)
        o.apply(op)
        reconcile(o, op, store, cap)
    return (emu.last_violation or "?") if emu.violations else None, o

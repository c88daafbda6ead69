# qcd.store: the `qcd` flash partition, the token maker's non-volatile storage
# (RFC 6290 §1.2: the secret must survive restarts; §8.2: the Child SPI ->
# IKE SA map, "updated on every Child SA create, rekey and delete").
#
# A key source for the hook (the interface of qcdhost.keys) kept in a record log
# on a raw data partition. Three modules: this one holds the state (Store:
# secret generations, the Child SPI map and its IKE SA table, the boot
# counter; Log: the log's blocks and counters) and answers the reads the
# hook makes all the time; qcd.records (what the records mean: the writes,
# the mount's replay, which live records a compaction copies, status()) and
# qcd.log (blocks, the record frame, forward CRCs, appending, compaction,
# the mount scan) are loaded when the store mounts, writes or reports, and
# with Store(unload=True), as the firmware app mounts it, dropped again
# afterwards. The format is docs/FORMAT.md (every field, block state and
# recovery rule); keep the three in step with it.
#
# RAM is bounded by the caps below, whatever the partition holds (crafted
# images included) and whatever the number of writes: the map (Child SPI ->
# IKE SA id, at most cap + 1 while reading), the IKE SA table (ids up to
# max(cap, 64)), at most MAX_GENERATIONS secrets, and a few per-block
# integers. Mount reads each block at most once and never raises on what it
# reads; counters at the end of their u32 range stop or saturate (FORMAT.md).

import sys

from qcd.log import BLOCK_SIZE, HEADER_LEN, MAX_BLOCKS, MIN_BLOCKS, RESERVE, S_BLANK, S_LIVE, WINDOW  # noqa: F401  (public here too; block states: qcd.log)
from qcd.tokens import fingerprint

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

# The RAM layout the reads below share with qcd.records (which defines all
# of it; host_tests/test_store_unload.py checks the values agree):
_F_INITIATOR = const(0x01)  # CHILD_NEW flags
_F_IPV6 = const(0x02)
_GEN_SHIFT = const(2)
_AT_IKE = const(16)  # a map entry's IKE SA id: entry >> _AT_IKE
_I_DEF = const(0)  # an IKE SA table entry's definition
_G_SECRET = const(0)  # a secret generation entry's secret

# Block-device ioctls (MicroPython extmod/vfs.h), as esp32.Partition answers them.
_IOCTL_BLOCK_COUNT = const(4)
_IOCTL_BLOCK_SIZE = const(5)


def gen_tag(gen):
    # A generation's 6-bit tag in CHILD_NEW's flags: 1..63, 0 for "unknown".
    return (gen - 1) % 63 + 1 if gen > 0 else 0


class Log:
    """The RAM state of the record log on partition `dev` (blocks,
    counters, damage): what qcd.log's functions work on, and what status()
    shows. readonly: never write."""

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
        self._rb = None  # the mount's read window (qcd.log._need)
        self._rbase = self._rend = 0
        self.restart = False  # the next open is this boot's first (see qcd.log._open)
        self.damage = []
        self.readonly_reason = "opened read-only" if readonly else ""
        self.damage_count = self.writes = self.bytes_written = self.erases = 0
        self.compactions = self.write_errors = self.mount_read_bytes = 0


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
    unload         drop the store's code (qcd.records, qcd.log) from the
                   heap after the mount and after each write or status(),
                   and load it again for the next (the firmware app: on a
                   board that loads .mpy, code is heap; issue 10 §3)

    Mounting happens here: the partition is read once, the log replayed, an
    interrupted compaction rolled back, damage skipped and listed in
    status(); a blank or unreadable partition comes up with a fresh secret.
    The log's state is self.log (Log: blocks, counters, damage). This class
    holds the state and the reads; the mount, the writes and status() are
    qcd.records' (over qcd.log), loaded when they run.
    """

    def __init__(self, dev, rng=None, max_children=DEFAULT_MAX_CHILDREN, initial_secret=None, count_boot=True, readonly=False, unload=False):
        self.dev = dev
        self.readonly = bool(readonly)
        self.unload = bool(unload)
        self.log = lg = Log(dev, self.readonly)
        n = self.blocks = lg.blocks
        self._rng = rng
        fit = (n - 1 - RESERVE) * (BLOCK_SIZE - HEADER_LEN) // 2 // 48
        self.max_children = max(1, min(int(max_children), fit))
        # IKE SA ids a writer can have allocated: the lowest unused one, so
        # never above the number of Child SAs it held (the cap, or the
        # default cap of a writer that had a higher one). Larger ids on
        # flash are damage: skipped, which bounds the IKE SA table.
        self._ike_limit = max(self.max_children, DEFAULT_MAX_CHILDREN)
        self._children = {}  # spi -> qcd.records._at(IKE SA id, block, slot) of its latest record
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
        # Map writes that waited for memory, in order (see _write).
        self.pending = []
        self._code("mount", initial_secret, count_boot)

    def _code(self, name, *args):
        # Run qcd.records' function `name` on this store. With unload, its
        # code and qcd.log's leave the heap again afterwards (they hold no
        # state: all of it is here and in self.log), and garbage is
        # collected first, so that loading them finds the heap's holes.
        if self.unload:
            import gc

            gc.collect()
        try:
            from qcd import records

            return getattr(records, name)(self, *args)
        finally:
            records = None
            if self.unload:
                _unload()

    def _write(self, name, *args):
        # A write of the Child SPI map. When its code cannot be loaded (for
        # want of memory, the unloading store's risk: a MemoryError before
        # anything is written), it waits in self.pending and is done,
        # in order, before the next write or by flush(), which QcdHook calls
        # at each protected message: postponed, never lost. The caller still
        # gets the MemoryError, to count and log.
        self.pending.append((name, args))
        self.flush()

    def flush(self):
        """Do the map writes that waited for memory, oldest first (each
        leaves the queue once done). MemoryError if one still cannot run."""
        p = self.pending
        while p:
            name, args = p[0]
            try:
                from qcd import records  # noqa: F401  (the load that can fail; _code runs it)
            except Exception:
                _unload()  # nothing half-loaded left behind
                raise
            records = None
            try:
                self._code(name, *args)
            finally:
                # done, or failed inside (an OSError of the flash, a bad
                # argument): never run twice
                p.pop(0)

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
        self._write("child_put", spi, spi_i, spi_r, initiator, peer_ip, gen)

    def child_drop(self, spi):
        if spi in self._children or self.pending:
            self._write("child_drop", spi)

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
        hits = [g for g in self._secrets if gen_tag(g) == t] if t else []
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
        return self._code("rollover", secret)

    def retire(self, fp):
        """Forget the secret with fingerprint `fp` (never the current one).
        True when done; ValueError saying why when not (the current secret,
        or no secret with that fingerprint: the ones held are named)."""
        return self._code("retire", fp)

    # -- diagnostics ------------------------------------------------------------------

    def status(self):
        """What the partition holds and what happened to it; never a secret."""
        return self._code("status")

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


def _unload():
    # qcd.records and qcd.log out of sys.modules and the package, so that
    # nothing refers to their code any more.
    import qcd

    for m in ("records", "log"):
        sys.modules.pop("qcd." + m, None)
        try:
            delattr(qcd, m)
        except AttributeError:
            pass


def mount(dev, rng=None, **kw):
    """Mount the qcd partition on `dev`: a Store (see its docstring)."""
    return Store(dev, rng, **kw)

# qcd.store on crafted partitions (issue 13 §4): docs/FORMAT.md's promises
# must hold for ANY bytes on the partition, CRC-valid or not, consistent or
# not: the writable mount never raises, RAM stays bounded by the caps, the
# store never programs over bytes it did not erase (qcdhost.emu.flash flags any
# program over unerased bytes), and the counters saturate or stop by the
# rules FORMAT.md gives (Limits and constants).
#
# The images are built here from FORMAT.md (a header and record encoder that
# does not use store.py), then a hypothesis property feeds arbitrary block
# contents, mixing CRC-valid headers and records with extreme field values
# and raw bytes, to the writable mount.
import binascii
import struct
import subprocess
import sys
import tracemalloc

from qcdhost.emu import flash as flashemu
from qcdhost.emu.flash import BLOCK_SIZE, FlashEmu, MemoryBacking
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qcd.store import DEFAULT_MAX_CHILDREN, MAX_GENERATIONS, Store

U32 = 0xFFFFFFFF
LENGTHS = {1: 16, 2: 48, 3: 16, 4: 16, 5: 16, 6: 48}  # FORMAT.md, Record types
BOOT, SECRET, RETIRE, CHILD, DROP, CHILD_NEW = 1, 2, 3, 4, 5, 6


def crc(data, value=0):
    return binascii.crc32(bytes(data), value) & U32


def header(seq, prev, base, erases, fcrc, blocks=4, version=1):
    h = bytearray(32)
    h[0:4] = b"QCDP"
    struct.pack_into("<BBHIIIII", h, 4, version, blocks, 0, seq, prev, base, erases, fcrc)
    struct.pack_into("<I", h, 28, crc(h[0:28]))
    return bytes(h)


def record(seq, typ, v, b1=0, ike=0, body=b"", ln=None, after=b"\xff" * 48):
    """A sealed record of block generation `seq`; `after`: what the bytes
    after it read as when it was programmed (its forward CRC)."""
    ln = ln or LENGTHS.get(typ, 16)
    r = bytearray(ln)
    struct.pack_into("<BBHI", r, 0, ((ln // 16 - 1) << 6) | typ, b1, ike, v)
    r[8 : 8 + len(body)] = body
    struct.pack_into("<I", r, ln - 8, crc(after[: min(48, BLOCK_SIZE)]))
    struct.pack_into("<I", r, ln - 4, crc(r[: ln - 4], crc(struct.pack("<I", seq))))
    return bytes(r)


def secret_rec(seq, gen, secret=None):
    return record(seq, SECRET, gen, body=secret or bytes([gen & 0xFF]) * 32)


def child_new(seq, spi, ike, i=0):
    d = struct.pack(">Q", 0x1111000000000000 + i) + struct.pack(">Q", 0x2222000000000000 + i) + bytes([10, 0, 0, 1]) + bytes(12)
    return record(seq, CHILD_NEW, spi, b1=1, ike=ike, body=d)


def block(seq, records, prev=None, base=1, erases=1, blocks=4, fcrc=None):
    """A log block: header (forward CRC of erased bytes unless given), then
    the records back to back, the rest erased."""
    body = b"".join(records)
    data = bytearray(b"\xff" * BLOCK_SIZE)
    data[32 : 32 + len(body)] = body
    if fcrc is None:
        fcrc = crc(b"\xff" * 48)
    data[0:32] = header(seq, seq - 1 if prev is None else prev, base, erases, fcrc, blocks)
    return bytes(data)


def image(blocks):
    return MemoryBacking(data=b"".join(blocks))


ERASED = b"\xff" * BLOCK_SIZE


def mount(backing, **kw):
    e = FlashEmu(backing)
    s = Store(e, lambda n: b"\x5a" * n, **kw)
    assert e.violations == 0, e.last_violation
    return e, s


def assert_bounded(s):
    assert 1 <= len(s.secrets()) <= MAX_GENERATIONS
    assert s.child_count() <= s.max_children
    assert len(s._ike) <= s.child_count()
    assert len(s.log.damage) <= 16


# -- counters at the end of their range ---------------------------------------------


def test_a_header_seq_of_0xffffffff_leaves_the_store_up_read_only():
    sec = bytes(range(32))
    b = image([block(U32, [secret_rec(U32, 1, sec), record(U32, BOOT, 7)], prev=0), ERASED, ERASED, ERASED])
    e, s = mount(b)
    assert s.secrets() == [sec]
    assert "seq exhausted" in s.status()["readonly"]
    assert s.fresh_secret == ""
    try:
        s.child_put(5, bytes(8), bytes(8), True, bytes(4))
    except OSError as ex:
        assert "exhausted" in str(ex)
    else:
        raise AssertionError("a write past seq 0xFFFFFFFF was accepted")
    # and it says the same at every boot, programming nothing
    e2, s2 = mount(b)
    assert s2.secrets() == [sec] and e2.programs == 0 and e2.erases == 0


def test_a_seq_of_0xffffffff_and_no_secret_still_comes_up_with_a_ram_secret():
    b = image([block(U32, [record(U32, BOOT, 7)], prev=0), ERASED, ERASED, ERASED])
    e, s = mount(b)
    assert len(s.secrets()) == 1
    assert "RAM only" in s.fresh_secret


def test_a_generation_of_0xffffffff_refuses_rollover_clearly():
    sec = bytes(range(32))
    b = image([block(1, [secret_rec(1, U32, sec)], prev=0), ERASED, ERASED, ERASED])
    e, s = mount(b)
    assert s.secrets() == [sec]
    try:
        s.rollover(bytes(32 * [9]))
    except ValueError as ex:
        assert "exhausted" in str(ex)
    else:
        raise AssertionError("rollover past generation 0xFFFFFFFF")
    s.child_put(5, bytes(8), bytes(8), True, bytes(4))  # everything else works
    _, s2 = mount(b)
    assert s2.secrets() == [sec] and s2.child_count() == 1


def test_a_retired_generation_of_0xffffffff_still_gets_a_fresh_secret_that_stays():
    b = image([block(1, [record(1, RETIRE, U32)], prev=0), ERASED, ERASED, ERASED])
    e, s = mount(b)
    assert len(s.secrets()) == 1 and s.fresh_secret
    assert s.status()["readonly"] == "no"
    first = s.secrets()[0]
    s.rollover(bytes(32 * [9]))  # generation 2: newer than the fresh 1
    _, s2 = mount(b)
    assert s2.secrets() == [bytes(32 * [9]), first]


def test_a_boot_count_of_0xffffffff_saturates():
    b = image([block(1, [secret_rec(1, 1), record(1, BOOT, U32)], prev=0), ERASED, ERASED, ERASED])
    e, s = mount(b)
    assert s.boot_count == U32
    _, s2 = mount(b)
    assert s2.boot_count == U32


def test_an_erase_estimate_of_0xffffffff_saturates():
    blocks = [block(1, [secret_rec(1, 1)], prev=0, erases=U32)]
    # free blocks whose stale headers say 0xFFFFFFFF erases too
    blocks += [block(0, [], prev=0, base=0, erases=U32)] * 3
    b = image(blocks)
    e, s = mount(b)
    for k in range(400):  # enough to open and compact several blocks
        s.child_put(k % 5, bytes([k % 7]) * 8, bytes(8), True, bytes(4))
    assert max(s.block_info(i)[2] for i in range(4)) == U32
    _, s2 = mount(b)
    assert s2.child_count() == 5


from support import QCDTOOL  # noqa: E402


def test_qcdtool_provision_and_inspect_answer_crafted_counters_without_a_traceback(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(range(1, 33)))
    images = {
        "seq": [block(U32, [secret_rec(U32, 1), record(U32, BOOT, 7)], prev=0)],
        "generation": [block(1, [secret_rec(1, U32)], prev=0)],
        "boot": [block(1, [secret_rec(1, 1), record(1, BOOT, U32)], prev=0)],
        "erases": [block(1, [secret_rec(1, 1)], prev=0, erases=U32)] + [block(0, [], prev=0, base=0, erases=U32)] * 3,
    }
    for name, blocks in images.items():
        img = tmp_path / (name + ".bin")
        img.write_bytes(b"".join(blocks + [ERASED] * (4 - len(blocks))))
        for args in (["provision", str(img), "--secret-file", str(secret)], ["inspect", str(img)]):
            r = subprocess.run([sys.executable, QCDTOOL] + args, capture_output=True, text=True, timeout=60)
            assert "Traceback" not in r.stderr, (name, r.stderr)
            if r.returncode:
                assert r.stderr.startswith("qcdtool: ") and "exhausted" in r.stderr, (name, r.stderr)
        if name in ("boot", "erases"):
            assert r.returncode == 0


def test_every_damage_code_has_a_sentence_in_qcdtool_and_codes_are_distinct():
    from qcd import log, records
    from qcdhost import qcdtool

    codes = {}
    for mod in (log, records):
        for name in dir(mod):
            if name.startswith("_D_"):
                assert getattr(mod, name) not in codes, (name, codes)
                codes[getattr(mod, name)] = name
    assert sorted(codes) == sorted(qcdtool.DAMAGE), (codes, sorted(qcdtool.DAMAGE))
    assert qcdtool.damage_text((10, 2, 432)) == "block 2: torn or damaged bytes at offset 432 (a write cut short?)"
    assert "unknown code" in qcdtool.damage_text((99, 1))


def test_qcdtool_inspect_says_what_the_damage_is(tmp_path):
    img = tmp_path / "torn.bin"
    blk = bytearray(block(1, [secret_rec(1, 1), record(1, BOOT, 3)], prev=0))
    blk[32 + 64 : 32 + 64 + 16] = bytes(16)  # a torn write after the last record
    img.write_bytes(bytes(blk) + ERASED * 3)
    r = subprocess.run([sys.executable, QCDTOOL, "inspect", str(img)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "block 0: torn or damaged bytes at offset 96 (a write cut short?)" in r.stdout


# -- caps ---------------------------------------------------------------------------


def test_84_crafted_secrets_come_up_as_the_newest_max_generations():
    blocks = [block(1, [secret_rec(1, g) for g in range(1, 81)], prev=0), block(2, [secret_rec(2, g) for g in range(81, 85)]), ERASED, ERASED]
    e, s = mount(image(blocks))
    assert len(s.secrets()) == MAX_GENERATIONS
    assert s.secrets() == [bytes([g]) * 32 for g in (84, 83, 82, 81)]
    assert s.status()["damage_count"] >= 80


def crafted_map(n_blocks=16, entries_per_block=251):
    # one CHILD_NEW then 16-byte CHILDs on IKE SA id 0: 252 entries a block
    blocks = []
    spi = 1
    for k in range(n_blocks - 1):
        seq = k + 1
        recs = [child_new(seq, spi, 0)] + ([secret_rec(seq, 1)] if k == 0 else [])
        spi += 1
        while len(b"".join(recs)) + 16 <= BLOCK_SIZE - 32:
            recs.append(record(seq, CHILD, spi, ike=0))
            spi += 1
        blocks.append(block(seq, recs, prev=k, blocks=n_blocks))
    return blocks + [ERASED], spi - 1


def peak_of(fn):
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_thousands_of_crafted_map_entries_never_sit_in_ram():
    blocks, n = crafted_map()
    assert n > 3700
    crafted = image(blocks)
    (e, s), peak = peak_of(lambda: mount(crafted))
    assert s.child_count() == DEFAULT_MAX_CHILDREN
    assert s.status()["readonly"] == "no"
    # the newest entries stay (the oldest records go first)
    assert s.child_get(n) is not None and s.child_get(1) is None
    # RAM: about what a mount of a map at its cap costs, not thousands of entries
    legit = image([block(1, [secret_rec(1, 1), child_new(1, 1, 0)] + [record(1, CHILD, k, ike=0) for k in range(2, 65)], prev=0, blocks=16)] + [ERASED] * 15)
    _, base = peak_of(lambda: mount(legit))
    assert peak < base + 12 * 1024, (peak, base)
    # and the next boot holds the same map
    _, s2 = mount(e.backing)
    assert dict(s2.children()) == dict(s.children())


def test_crafted_ike_sa_ids_do_not_grow_the_ike_table():
    # 4,000 IKE SA definitions with ids up to 65535, each dropped again
    recs_per_block = (BLOCK_SIZE - 32) // 64
    blocks = []
    spi = 1
    for k in range(15):
        seq = k + 1
        recs = [secret_rec(seq, 1)] if k == 0 else []
        while len(recs) < recs_per_block:
            recs.append(child_new(seq, spi, (spi * 16) & 0xFFFF, spi))
            recs.append(record(seq, DROP, spi))
            spi += 1
        blocks.append(block(seq, recs, prev=k, blocks=16))
    blocks.append(ERASED)
    crafted = image(blocks)
    (e, s), peak = peak_of(lambda: mount(crafted))
    assert s.child_count() == 0 and len(s._ike) == 0
    legit = image([block(1, [secret_rec(1, 1)], prev=0, blocks=16)] + [ERASED] * 15)
    _, base = peak_of(lambda: mount(legit))
    assert peak < base + 12 * 1024, (peak, base)


# -- programs over bytes that were not erased ----------------------------------------


def test_a_resealed_header_seq_does_not_make_the_mount_program_over_old_records():
    # A block whose header was resealed with another seq: its records no
    # longer check (their CRC is seeded with the old seq), and its forward
    # CRC was recomputed over them, so they look like "nothing written".
    recs = [secret_rec(3, 1), child_new(3, 7, 0), record(3, BOOT, 4)]
    body = b"".join(recs)
    blk = bytearray(block(3, recs, prev=0))
    blk[0:32] = header(9, 0, 1, 1, crc(body[:48]))
    b = image([bytes(blk), ERASED, ERASED, ERASED])
    e, s = mount(b)  # mount() asserts no flash violation
    assert len(s.secrets()) == 1 and s.fresh_secret
    _, s2 = mount(b)
    assert s2.secrets() == s.secrets()


def test_the_head_block_is_never_appended_to_after_a_reboot():
    # Whatever the bytes after its last record read as (a torn program can
    # read as erased once), the first write of a boot goes to an erased block.
    b = MemoryBacking(4 * BLOCK_SIZE)
    s = Store(FlashEmu(b), lambda n: b"\x01" * n)
    s.child_put(1, bytes(8), bytes(8), True, bytes(4))
    head = [i for i in range(4) if s.block_info(i)[0] == "live"]
    before = bytes(b.data)
    e = FlashEmu(b)
    Store(e, None)
    for i in head:
        assert bytes(b.data[i * BLOCK_SIZE : (i + 1) * BLOCK_SIZE]) == before[i * BLOCK_SIZE : (i + 1) * BLOCK_SIZE]
    assert e.erases == 1


# -- any bytes ------------------------------------------------------------------------

INTERESTING = st.one_of(st.sampled_from([0, 1, 2, 3, 4, 5, 64, 65, 0x7FFFFFFF, U32 - 1, U32]), st.integers(0, U32))


@st.composite
def crafted_block(draw, blocks):
    kind = draw(st.sampled_from(["erased", "random", "log", "log", "log"]))
    if kind == "erased":
        return ERASED
    if kind == "random":
        return draw(st.binary(min_size=BLOCK_SIZE, max_size=BLOCK_SIZE))
    seq = draw(st.one_of(st.integers(0, 8), INTERESTING))
    recs = []
    for _ in range(draw(st.integers(0, 12))):
        typ = draw(st.one_of(st.integers(1, 6), st.integers(0, 63)))
        ln = draw(st.one_of(st.just(LENGTHS.get(typ, 16)), st.sampled_from([16, 32, 48, 64])))
        v = draw(st.one_of(st.integers(0, 8), INTERESTING))
        ike = draw(st.one_of(st.integers(0, 3), st.integers(0, 0xFFFF)))
        body = draw(st.binary(min_size=0, max_size=ln - 16))
        recs.append(record(seq if draw(st.integers(0, 9)) else seq ^ 1, typ, v, b1=draw(st.integers(0, 255)), ike=ike, body=body, ln=ln))
        if draw(st.integers(0, 7)) == 0:
            recs.append(draw(st.binary(min_size=16, max_size=16)))
    data = bytearray(block(seq, recs, prev=draw(st.one_of(st.integers(0, 8), INTERESTING)), base=draw(st.one_of(st.integers(0, 8), INTERESTING)),
                           erases=draw(INTERESTING), blocks=blocks, fcrc=draw(st.one_of(st.none(), st.integers(0, U32)))))
    if draw(st.integers(0, 5)) == 0:
        data[4] = draw(st.integers(0, 255))  # another version: reseal
        data[28:32] = struct.pack("<I", crc(data[0:28]))
    if draw(st.integers(0, 5)) == 0:  # a few flipped bytes anywhere
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, BLOCK_SIZE - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@st.composite
def partition(draw):
    n = draw(st.integers(4, 6))
    return [draw(crafted_block(n)) for _ in range(n)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(blocks=partition(), cap=st.sampled_from([3, 10, DEFAULT_MAX_CHILDREN]), encrypted=st.booleans())
def test_any_partition_contents_mount_writably_without_raising_or_reprogramming(blocks, cap, encrypted):
    b = MemoryBacking(data=b"".join(blocks))
    if encrypted:
        b.meta = flashemu.new_meta(len(blocks), True, bytes(32))
    e = FlashEmu(b)
    s = Store(e, lambda n: b"\x33" * n, max_children=cap)
    assert e.violations == 0, e.last_violation
    assert_bounded(s)
    s.status()
    repr(s)
    writable = s.status()["readonly"] == "no"
    # It keeps working: a put at and past the cap, a drop, a rollover.
    try:
        for k in range(cap + 2):
            s.child_put(0x100 + k, bytes([k]) * 8, bytes(8), k % 2 == 0, bytes([10, 0, 0, k]))
        s.child_drop(0x100)
        if len(s.secrets()) < MAX_GENERATIONS:
            s.rollover(bytes([0x44]) * 32)
    except ValueError as ex:
        assert "exhausted" in str(ex) or "already held" in str(ex), ex
    except OSError as ex:
        assert not writable or s.status()["readonly"] != "no", ex
    assert e.violations == 0, e.last_violation
    assert_bounded(s)
    # What it holds is what the next boot finds.
    e2 = FlashEmu(b)
    s2 = Store(e2, lambda n: b"\x77" * n, max_children=cap)
    assert e2.violations == 0, e2.last_violation
    assert_bounded(s2)
    if writable and s.status()["readonly"] == "no":
        assert s2.secrets() == s.secrets()
        assert dict(s2.children()) == dict(s.children())

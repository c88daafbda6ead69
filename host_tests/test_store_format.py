# The on-flash format of qcd.store, pinned against docs/FORMAT.md and against
# images the store wrote before (host_tests/data/store_v1_golden.bin.gz, by
# today's writer, and store_v1_e80588e.bin.gz, by the store of commit e80588e,
# which still appended to the head block across boots).
#
# Three independent checks:
#   - a decoder written here from FORMAT.md alone (not from store.py) reads
#     the golden image: every header field at its documented offset, every
#     record's tag, length, zero padding, CRC (seeded with the block's seq)
#     and forward CRC, the chain, the replay rules; the store's own mount of
#     that image must hold exactly what the decoder found;
#   - the store, running the same fixed workload today, writes that image
#     byte for byte (plain flash), and the same physical bytes as then on
#     encrypted flash (a SHA-256 is pinned): the writer's behaviour, down to
#     where compaction and eviction put each record, has not changed;
#   - both golden images mount, and read as the decoder reads them.
# The workload covers a blank first boot, evictions at the map's cap, IPv4
# and IPv6 peers, both roles, rollovers and a retirement, several rounds of
# compaction on a 4-block partition, reboots (each boot's first block takes
# the whole log), and a power cut that tears a record in the middle of a
# block, left as it is (the last boot only reads).
#
# A deliberate change to what the store writes (not to the format) changes
# the image: regenerate it with `python host_tests/test_store_format.py
# --write` and say why in the commit. A change to the format is a new
# version (FORMAT.md), and this image must then still be read or refused
# as that document says.
import binascii
import gzip
import hashlib
import os
import struct
import sys

import pytest

from qcd.store import Store
from qcdhost.emu import flash as flashemu
from qcdhost.emu.flash import BLOCK_SIZE, FlashEmu, MemoryBacking

HERE = os.path.dirname(os.path.abspath(__file__))
from qcd.tokens import fingerprint  # noqa: E402

GOLDEN = os.path.join(HERE, "data", "store_v1_golden.bin.gz")
# Written by the store of commit e80588e (same format; that writer appended
# to the newest block after a reboot): must still mount.
GOLDEN_E80588E = os.path.join(HERE, "data", "store_v1_e80588e.bin.gz")
# SHA-256 of the physical bytes the workload leaves on encrypted flash
# (flashemu's model, its default key for seed 0).
GOLDEN_ENCRYPTED_SHA256 = "8a0229ff21ef6894f2113fa75c77c3517c648e73d479e81caa8a591ba133252b"
GOLDEN_CHILDREN = 10  # the map at its cap when the power was cut
BLOCKS = 4
CAP = 10


def crc(data, value=0):
    return binascii.crc32(bytes(data), value) & 0xFFFFFFFF


def ike(i):
    # (spi_i, spi_r, initiator, peer): IPv6 peers for every third IKE SA
    h = hashlib.sha256(b"golden ike %d" % i).digest()
    peer = h[16:32] if i % 3 == 0 else bytes([198, 51, 100, i])
    return (h[0:8], h[8:16], i % 2 == 0, peer)


def workload(encrypted=False):
    """Run the fixed workload; returns the backing (the image) and what was
    acknowledged: (secrets, children, boot count)."""
    backing = MemoryBacking(BLOCKS * BLOCK_SIZE)
    e = FlashEmu(backing, encrypted=encrypted)
    rng = flashemu._Rand(4242).bytes
    s = Store(e, rng, max_children=CAP)  # blank: a fresh secret from rng
    for k in range(14):  # past the cap: four evictions
        s.child_put(0x1000 + k, *ike(k % 5))
    s.rollover(hashlib.sha256(b"golden secret 2").digest())
    s.rollover()  # from rng
    s.retire(fingerprint(s.secrets()[2]))  # the first generation
    e = e.reboot()
    s = Store(e, None, max_children=CAP)
    for k in range(700):  # several compactions on 4 blocks
        spi = 0x2000 + k % 9
        if k % 7 == 3:
            s.child_drop(spi)
        else:
            s.child_put(spi, *ike(k % 11))
    e = e.reboot()
    s = Store(e, None, max_children=CAP)
    for k in range(5):
        s.child_put(0x3000 + k, *ike(20 + k))
    e = e.reboot()
    s = Store(e, None, max_children=CAP)
    s.child_put(0x4000, *ike(30))
    s.child_drop(0x2001)
    e = e.reboot(seed=1)
    s = Store(e, None, max_children=CAP)  # boot 5: the whole log in a new block
    for k in range(240):  # Child SAs moving between IKE SAs: into a second block
        s.child_put(0x3000 + k % 4, *ike(20 + k % 3))
    # A power cut tears the 3rd flash operation from here, a 48-byte CHILD_NEW
    # in the middle of a block (the emulator clears a random half of its bits).
    e.cut_at = e.ops + 3
    try:
        for k in range(5):
            s.child_put(0x5000 + k, *ike(40 + k))
    except flashemu.PowerCut:
        pass
    e = e.reboot()
    s = Store(e, None, max_children=CAP, readonly=True, count_boot=False)
    return backing, e, s


# -- a decoder written from docs/FORMAT.md --------------------------------------

LENGTHS = {1: 16, 2: 48, 3: 16, 4: 16, 5: 16, 6: 48}  # FORMAT.md, Record types


def decode(read, erased, blocks):
    """read(block, offset, n) -> plaintext bytes; erased(block, offset, n) ->
    what n erased bytes there read as (0xFF, or their decryption). Returns the state the
    format describes: {"secrets": {gen: secret}, "children": {spi: entry},
    "boot": n, "chain": [blocks], "torn": [blocks]}. Asserts every field rule
    on the way (this is a test)."""
    hdr = {}
    for b in range(blocks):
        h = read(b, 0, 32)
        if h[0:4] != b"QCDP" or crc(h[0:28]) != struct.unpack_from("<I", h, 28)[0]:
            continue  # blank
        assert h[4] == 1, "version at offset 4"
        assert h[5] == blocks, "block count at offset 5"
        assert h[6:8] == b"\0\0", "reserved at offset 6"
        seq, prev, base, erases, fcrc = struct.unpack_from("<IIIII", h, 8)
        assert seq >= 1 and erases >= 1
        assert prev < seq and base <= seq
        # Forward CRC of bytes 32..79 as they read before the header was
        # programmed: the records compaction copied there first, or erased
        # flash (records appended later).
        assert fcrc in (crc(read(b, 32, 48)), crc(erased(b, 32, 48))), "header fcrc of block %d" % b
        hdr[b] = (seq, prev, base)
    newest = max(hdr, key=lambda b: hdr[b][0])
    base = hdr[newest][2]
    by_seq = dict((hdr[b][0], b) for b in hdr)
    chain = [newest]
    while True:
        seq, prev, _ = hdr[chain[-1]]
        if prev < base or prev >= seq:
            break
        chain.append(by_seq[prev])  # the golden image has no missing block
    chain.reverse()
    secrets, children, ikes, boot, torn, gen_tags = {}, {}, {}, 0, [], {}
    for b in chain:
        seq = hdr[b][0]
        data = read(b, 0, BLOCK_SIZE)
        seed = crc(struct.pack("<I", seq))
        pos = 32
        last_fcrc = struct.unpack_from("<I", data, 24)[0]
        recs = []
        while pos + 16 <= BLOCK_SIZE:
            tag = data[pos]
            ln = ((tag >> 6) + 1) * 16
            typ = tag & 0x3F
            if typ in (0, 63) or pos + ln > BLOCK_SIZE or crc(data[pos : pos + ln - 4], seed) != struct.unpack_from("<I", data, pos + ln - 4)[0]:
                break
            recs.append(pos)
            last_fcrc = struct.unpack_from("<I", data, pos + ln - 8)[0]
            pos += ln
        n = min(48, BLOCK_SIZE - pos)
        if crc(data[pos : pos + n]) != last_fcrc:
            # A write was cut short here: scan on, 16 bytes at a time.
            torn.append(b)
            p = pos + 16
            while p + 16 <= BLOCK_SIZE:
                tag = data[p]
                ln = ((tag >> 6) + 1) * 16
                if tag & 0x3F not in (0, 63) and p + ln <= BLOCK_SIZE and crc(data[p : p + ln - 4], seed) == struct.unpack_from("<I", data, p + ln - 4)[0]:
                    recs.append(p)
                    p += ln
                else:
                    p += 16
        for p in recs:
            tag = data[p]
            typ, ln = tag & 0x3F, ((tag >> 6) + 1) * 16
            assert LENGTHS[typ] == ln, "tag 0x%02x at block %d offset %d" % (tag, b, p)
            assert p % 16 == 0
            # Before a record was programmed, the bytes after it were erased.
            assert struct.unpack_from("<I", data, p + ln - 8)[0] == crc(erased(b, p + ln, min(48, BLOCK_SIZE - p - ln)))
            v = struct.unpack_from("<I", data, p + 4)[0]
            if typ in (1, 2, 3, 5):
                assert data[p + 1 : p + 4] == b"\0\0\0", "zero body bytes 1..3"
            if typ == 1:
                boot = v
            elif typ == 2:
                secrets[v] = bytes(data[p + 8 : p + 40])
            elif typ == 3:
                secrets.pop(v, None)
            elif typ == 5:
                children.pop(v, None)
            else:
                ike_id = struct.unpack_from("<H", data, p + 2)[0]
                if typ == 6:
                    flags = data[p + 1]
                    gen_tags[ike_id] = flags >> 2  # bits 2-7: generation tag, 0 = not recorded
                    addr = bytes(data[p + 24 : p + 40])
                    if not flags & 2:
                        assert addr[4:] == bytes(12), "IPv4: 12 zero bytes after it"
                        addr = addr[:4]
                    ikes[ike_id] = (bytes(data[p + 8 : p + 16]), bytes(data[p + 16 : p + 24]), bool(flags & 1), addr)
                else:
                    assert data[p + 1] == 0
                children[v] = ike_id
    out = {}
    tags = {}
    for spi, ike_id in children.items():
        out[spi] = ikes[ike_id]  # the golden image loses no CHILD_NEW
        tags[ikes[ike_id][0] + ikes[ike_id][1]] = gen_tags[ike_id]
    # The generation a tag names: the one live generation g with
    # (g - 1) % 63 + 1 == tag (FORMAT.md), else none (0).
    gens = {}
    for sa, t in tags.items():
        hits = [g for g in secrets if t and (g - 1) % 63 + 1 == t]
        gens[sa] = hits[0] if len(hits) == 1 else 0
    return {"secrets": secrets, "children": out, "boot": boot, "chain": chain, "torn": torn, "generations": gens}


def emu_reader(e):
    def read(b, off, n):
        buf = bytearray(n)
        e.readblocks(b, buf, off)
        return bytes(buf)

    def erased(b, off, n):
        # Erased flash is physical 0xFF; readblocks decrypts it on an
        # encrypted partition (the emulator's model of that).
        ff = b"\xff" * n
        return e._crypt(b * BLOCK_SIZE + off, ff) if e.encrypted else ff

    return read, erased


def golden_backing(path=GOLDEN):
    with gzip.open(path, "rb") as f:
        data = f.read()
    return MemoryBacking(data=data)


def test_the_golden_image_matches_format_md():
    e = FlashEmu(golden_backing(), readonly=True)
    d = decode(*emu_reader(e), BLOCKS)
    assert d["boot"] == 5
    assert len(d["secrets"]) == 2 and max(d["secrets"]) == 3
    assert d["secrets"][2] == hashlib.sha256(b"golden secret 2").digest()
    assert GOLDEN_CHILDREN == len(d["children"]) <= CAP
    assert d["torn"], "the power cut left a torn record"
    assert len(d["chain"]) >= 2


def test_the_e80588e_image_matches_format_md():
    e = FlashEmu(golden_backing(GOLDEN_E80588E), readonly=True)
    d = decode(*emu_reader(e), BLOCKS)
    # What the workload left, as the format says to read it.
    assert d["boot"] == 5
    assert len(d["secrets"]) == 2 and max(d["secrets"]) == 3
    assert d["secrets"][2] == hashlib.sha256(b"golden secret 2").digest()
    assert len(d["children"]) == CAP - 1  # at the cap, then one dropped
    assert d["torn"], "the power cut left a torn record"
    assert len(d["chain"]) >= 2


@pytest.mark.parametrize("path", [GOLDEN, GOLDEN_E80588E], ids=["golden", "e80588e"])
def test_the_store_mounts_the_golden_image_as_format_md_reads_it(path):
    e = FlashEmu(golden_backing(path), readonly=True)
    d = decode(*emu_reader(e), BLOCKS)
    s = Store(FlashEmu(golden_backing(path), readonly=True), None, max_children=CAP, readonly=True, count_boot=False)
    gens = sorted(d["secrets"], reverse=True)
    assert s.secrets() == [d["secrets"][g] for g in gens]
    assert dict(s.children()) == d["children"]
    assert s.boot_count == d["boot"]
    # Written before the generation tag existed: every IKE SA's token
    # generation is unknown (the maker then answers once per candidate).
    assert set(d["generations"].values()) == {0}
    assert all(s.generation_of(sa[:8], sa[8:]) == 0 for sa in d["generations"])
    live = [b for b in range(BLOCKS) if s.block_info(b)[0] == "live"]
    assert sorted(live) == sorted(d["chain"])
    assert s.status()["damage_count"] >= 1  # the torn record is reported


@pytest.mark.parametrize("path", [GOLDEN, GOLDEN_E80588E], ids=["golden", "e80588e"])
def test_a_writable_mount_of_the_golden_image_keeps_what_it_holds(path):
    backing = golden_backing(path)
    s0 = Store(FlashEmu(golden_backing(path), readonly=True), None, max_children=CAP, readonly=True, count_boot=False)
    e = FlashEmu(backing)
    s = Store(e, None, max_children=CAP)
    assert e.violations == 0
    assert s.secrets() == s0.secrets() and dict(s.children()) == dict(s0.children())
    assert s.boot_count == s0.boot_count + 1
    s2 = Store(FlashEmu(backing), None, max_children=CAP, readonly=True, count_boot=False)
    assert s2.secrets() == s0.secrets() and dict(s2.children()) == dict(s0.children())
    assert s2.status()["damage_count"] == 0  # the torn block is stale now


def test_the_store_writes_the_golden_image_byte_for_byte():
    backing, e, s = workload()
    golden = golden_backing()
    if bytes(backing.data) != bytes(golden.data):
        first = next(i for i in range(len(golden.data)) if backing.data[i] != golden.data[i])
        pytest.fail("the store wrote a different image: first difference at block %d offset %d" % (first // BLOCK_SIZE, first % BLOCK_SIZE))
    assert e.violations == 0
    # And the store that wrote it reads back what the format decoder reads.
    d = decode(*emu_reader(e), BLOCKS)
    assert dict(s.children()) == d["children"]


def test_the_store_writes_the_same_encrypted_image_as_before():
    backing, e, s = workload(encrypted=True)
    assert e.violations == 0
    assert hashlib.sha256(bytes(backing.data)).hexdigest() == GOLDEN_ENCRYPTED_SHA256
    d = decode(*emu_reader(e), BLOCKS)
    assert dict(s.children()) == d["children"]
    assert s.boot_count == d["boot"] == 5
    assert d["torn"] and len(d["chain"]) >= 2


def test_generation_tags_survive_reboots_and_compaction_as_format_md_reads_them():
    # The same kind of workload, now telling child_put which secret
    # generation made each IKE SA's token: what the format decoder reads
    # from the flags' bits 2-7 is what the store answers after a reboot.
    backing = MemoryBacking(BLOCKS * BLOCK_SIZE)
    e = FlashEmu(backing, encrypted=True)
    s = Store(e, flashemu._Rand(7).bytes, max_children=CAP)
    s.rollover(hashlib.sha256(b"gen 2").digest())
    s.rollover(hashlib.sha256(b"gen 3").digest())
    want = {}
    for k in range(600):  # several compactions on 4 blocks
        spi_i, spi_r, initiator, peer = ike(k % 7)
        gen = 1 + (k % 7) % 3
        if k % 5 == 4:
            s.child_drop(0x5000 + k % 8)
        else:
            s.child_put(0x5000 + k % 8, spi_i, spi_r, initiator, peer, gen)
            want[spi_i + spi_r] = gen
    assert s.log.compactions >= 2
    e = e.reboot()
    s = Store(e, None, max_children=CAP)
    d = decode(*emu_reader(e), BLOCKS)
    assert dict(s.children()) == d["children"]
    held = {e_[0] + e_[1] for _, e_ in s.children()}
    assert held and all(d["generations"][sa] == want[sa] == s.generation_of(sa[:8], sa[8:]) for sa in held)
    # A retired generation names nothing any more: unknown, not a wrong one.
    s.retire(fingerprint(hashlib.sha256(b"gen 2").digest()))
    assert all(s.generation_of(sa[:8], sa[8:]) == (0 if want[sa] == 2 else want[sa]) for sa in held)


if __name__ == "__main__":
    if "--write" not in sys.argv:
        sys.exit("usage: python host_tests/test_store_format.py --write  (regenerates %s)" % os.path.relpath(GOLDEN))
    backing, _, _ = workload()
    os.makedirs(os.path.dirname(GOLDEN), exist_ok=True)
    with gzip.GzipFile(GOLDEN, "wb", mtime=0) as f:
        f.write(bytes(backing.data))
    enc, _, _ = workload(encrypted=True)
    print("wrote %s; encrypted image SHA-256: %s" % (GOLDEN, hashlib.sha256(bytes(enc.data)).hexdigest()))

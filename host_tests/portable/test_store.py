# qcd.store on qcdhost.emu.flash: what the partition keeps across reboots,
# and what it does with blank, garbage, damaged and crafted flash (wear:
# test_store_wear.py). Runs on CPython and on MicroPython.
import unittest

from qcdhost.emu import flash as flashemu
from qcdhost.emu.flash import BLOCK_SIZE, FlashEmu, MemoryBacking
from portable_util import det_backing, det_bytes
from qcd.store import DEFAULT_MAX_CHILDREN, MAX_GENERATIONS, Store

from qcd.tokens import fingerprint
from store_util import D_DAMAGED, D_HEADER_CRC, I1, I2, IP4, IP6, R1, R2, Rng, flip, fresh, reboot


class TestFirstBoot(unittest.TestCase):
    def test_blank_partition_gets_a_secret_from_the_rng(self):
        rng = Rng(7)
        e = FlashEmu(MemoryBacking(4 * BLOCK_SIZE))
        s = Store(e, rng)
        self.assertEqual(len(s.secrets()), 1)
        self.assertEqual(s.secrets()[0], flashemu._Rand(7).bytes(32))
        self.assertEqual(s.boot_count, 1)
        self.assertTrue("blank" in s.status()["fresh_secret"])

    def test_secret_survives_reboots_and_the_boot_counter_counts(self):
        for enc in (False, True):
            e, s = fresh(encrypted=enc)
            sec = s.secrets()[0]
            for boot in range(2, 6):
                e, s = reboot(e)
                self.assertEqual(s.secrets(), [sec])
                self.assertEqual(s.boot_count, boot)
                self.assertEqual(s.status()["fresh_secret"], "no")
            self.assertEqual(e.violations, 0)

    def test_initial_secret_is_used_instead_of_the_rng(self):
        rng = Rng()
        e = FlashEmu(MemoryBacking(4 * BLOCK_SIZE))
        s = Store(e, rng, initial_secret=b"k" * 32)
        self.assertEqual(s.secrets(), [b"k" * 32])
        self.assertEqual(rng.calls, 0)

    def test_garbage_partition_comes_up_with_a_fresh_secret(self):
        e = FlashEmu(det_backing(9, 4))
        s = Store(e, Rng())
        self.assertEqual(len(s.secrets()), 1)
        self.assertTrue(s.status()["fresh_secret"] != "no")
        e, s2 = reboot(e)
        self.assertEqual(s2.secrets(), s.secrets())

    def test_wrong_geometry_is_refused_clearly(self):
        with self.assertRaises(ValueError):
            Store(FlashEmu(MemoryBacking(3 * BLOCK_SIZE)), Rng())


class TestChildMap(unittest.TestCase):
    def test_put_get_drop_persist(self):
        for enc in (False, True):
            e, s = fresh(encrypted=enc)
            s.child_put(0x11111111, I1, R1, True, IP4)
            s.child_put(0xFFFFFFFF, I2, R2, False, IP6)
            s.child_put(7, I1, R1, True, IP4)
            s.child_drop(7)
            e, s = reboot(e)
            self.assertEqual(s.child_get(0x11111111), (I1, R1, True, IP4))
            self.assertEqual(s.child_get(0xFFFFFFFF), (I2, R2, False, IP6))
            self.assertEqual(s.child_get(7), None)
            self.assertEqual(s.child_count(), 2)
            self.assertEqual(sorted(x[0] for x in s.children()), [0x11111111, 0xFFFFFFFF])

    def test_unchanged_put_and_unknown_drop_write_nothing(self):
        e, s = fresh()
        s.child_put(5, I1, R1, True, IP4)
        n = e.programs
        s.child_put(5, I1, R1, True, IP4)
        s.child_drop(6)
        self.assertEqual(e.programs, n)

    def test_child_moved_to_a_new_ike_sa(self):
        e, s = fresh()
        s.child_put(5, I1, R1, True, IP4)
        s.child_put(6, I1, R1, True, IP4)
        s.child_put(5, I2, R2, True, IP4)  # IKE SA rekey moves Child SA 5
        e, s = reboot(e)
        self.assertEqual(s.child_get(5), (I2, R2, True, IP4))
        self.assertEqual(s.child_get(6), (I1, R1, True, IP4))
        self.assertEqual(s.status()["ike_sas"], 2)

    def test_a_child_on_a_known_ike_sa_costs_one_16_byte_record(self):
        e, s = fresh()
        s.child_put(5, I1, R1, True, IP4)
        n = e.bytes_programmed
        s.child_put(6, I1, R1, True, IP4)
        self.assertEqual(e.bytes_programmed - n, 16)
        n = e.bytes_programmed
        s.child_drop(6)
        self.assertEqual(e.bytes_programmed - n, 16)

    def test_bad_arguments_are_refused_without_a_write(self):
        e, s = fresh()
        n = e.programs
        for args in ((-1, I1, R1, True, IP4), (1 << 32, I1, R1, True, IP4), (1, I1[:7], R1, True, IP4), (1, I1, R1, True, b"\x01\x02")):
            with self.assertRaises(ValueError):
                s.child_put(*args)
        self.assertEqual(e.programs, n)
        self.assertEqual(s.child_count(), 0)

    def test_at_the_cap_the_oldest_entry_is_evicted(self):
        e, s = fresh(blocks=4, max_children=8)
        self.assertEqual(s.max_children, 8)
        for spi in range(1, 9):
            s.child_put(spi, I1, R1, True, IP4)
        s.child_put(100, I1, R1, True, IP4)
        self.assertEqual(s.child_count(), 8)
        self.assertEqual(s.status()["evicted"], 1)
        self.assertEqual(s.child_get(100), (I1, R1, True, IP4))
        e, s = reboot(e, max_children=8)
        self.assertEqual(s.child_count(), 8)

    def test_evicting_an_ike_sas_last_child_then_reusing_that_ike_sa(self):
        # Found by host_tests/test_store_model.py: the eviction forgot the
        # IKE SA the new entry was about to reference.
        e, s = fresh(blocks=4, max_children=3)
        s.child_put(1, I1, R1, True, IP4)  # the only Child SA on (I1, R1): evicted first
        s.child_put(2, I2, R2, True, IP4)
        s.child_put(3, I2, R2, True, IP4)
        s.child_put(4, I1, R1, True, IP4)
        self.assertEqual(s.child_get(1), None)
        self.assertEqual(s.child_get(4), (I1, R1, True, IP4))
        e, s = reboot(e, max_children=3)
        self.assertEqual(sorted(s.children()), [(2, (I2, R2, True, IP4)), (3, (I2, R2, True, IP4)), (4, (I1, R1, True, IP4))])
        self.assertEqual(s.status()["damage_count"], 0)

    def test_the_cap_fits_the_partition(self):
        e, s = fresh(blocks=4)
        self.assertTrue(s.max_children < DEFAULT_MAX_CHILDREN)
        e, s = fresh(blocks=16)
        self.assertEqual(s.max_children, DEFAULT_MAX_CHILDREN)


class TestSecrets(unittest.TestCase):
    def test_rollover_adds_a_current_secret_and_keeps_the_old(self):
        e, s = fresh()
        old = s.secrets()[0]
        fp = s.rollover(b"n" * 32)
        self.assertEqual(fp, fingerprint(b"n" * 32))
        e, s = reboot(e)
        self.assertEqual(s.secrets(), [b"n" * 32, old])

    def test_rollover_without_a_secret_draws_one(self):
        rng = Rng(3)
        e = FlashEmu(MemoryBacking(4 * BLOCK_SIZE))
        s = Store(e, rng)
        s.rollover()
        self.assertEqual(rng.calls, 2)
        self.assertEqual(len(s.secrets()), 2)

    def test_retire_forgets_an_old_secret_never_the_current(self):
        e, s = fresh()
        old = s.secrets()[0]
        s.rollover(b"n" * 32)
        with self.assertRaises(ValueError) as cm:
            s.retire(fingerprint(b"n" * 32))
        self.assertIn("is the current secret", str(cm.exception))
        self.assertTrue(s.retire(fingerprint(old)))
        with self.assertRaises(ValueError) as cm:
            s.retire(fingerprint(old))
        self.assertIn("no secret with fingerprint", str(cm.exception))
        self.assertIn(fingerprint(b"n" * 32), str(cm.exception))  # names what is held
        e, s = reboot(e)
        self.assertEqual(s.secrets(), [b"n" * 32])

    def test_at_most_max_generations(self):
        e, s = fresh()
        for i in range(MAX_GENERATIONS - 1):
            s.rollover(bytes([i]) * 32)
        with self.assertRaises(ValueError):
            s.rollover(b"z" * 32)
        with self.assertRaises(ValueError):
            s.rollover(bytes([0]) * 32)  # already held
        with self.assertRaises(ValueError):
            s.rollover(b"short")

    def test_status_shows_fingerprints_never_secrets(self):
        e, s = fresh()
        s.rollover(b"n" * 32)
        text = repr(s.status())
        self.assertTrue(fingerprint(b"n" * 32) in text)
        for sec in s.secrets():
            self.assertFalse(sec.hex() in text)
            self.assertFalse(repr(sec) in text)


class TestDamage(unittest.TestCase):
    def test_a_corrupted_record_is_skipped_and_later_ones_kept(self):
        e, s = fresh(blocks=4)
        for spi in range(1, 11):
            s.child_put(spi, I1, R1, True, IP4)
        # Records after the secret (48) and boot (16) records: the first
        # CHILD_NEW is 48 bytes, then 16 bytes each. Damage child 5's record.
        off = s.log.head * BLOCK_SIZE + 32 + 48 + 16 + 48 + 3 * 16
        flip(e.backing, off + 5, 0x10)
        e, s2 = reboot(e)
        self.assertEqual(s2.child_get(5), None)
        for spi in (1, 2, 3, 4, 6, 7, 8, 9, 10):
            self.assertEqual(s2.child_get(spi), (I1, R1, True, IP4))
        self.assertTrue(s2.status()["damage_count"] >= 1)
        self.assertEqual(s2.status()["damage"][0][0], D_DAMAGED)

    def test_a_damaged_block_header_loses_that_block_only(self):
        e, s = fresh(blocks=5)
        sec = s.secrets()[0]
        for i in range(400):  # two blocks' worth
            s.child_put(1000 + i, I1, R1, True, IP4)
            if i >= 5:
                s.child_drop(1000 + i - 5)
        head = s.log.head
        flip(e.backing, head * BLOCK_SIZE + 9, 1)  # the newest block's seq
        s2 = Store(e.reboot(), Rng(), count_boot=False)
        self.assertEqual(s2.secrets()[0], sec)
        self.assertEqual(s2.status()["damage"][0], (D_HEADER_CRC, head))
        self.assertEqual(s2.block_info(head)[0], "blank")
        # What survives is an earlier state of the map: nothing made up.
        for spi, entry in s2.children():
            self.assertTrue(1000 <= spi < 1400)
            self.assertEqual(entry, (I1, R1, True, IP4))
        self.assertEqual(e.violations, 0)

    def test_readonly_mount_writes_nothing(self):
        e, s = fresh()
        e2 = e.reboot()
        s2 = Store(e2, None, readonly=True)
        self.assertEqual(s2.secrets(), s.secrets())
        with self.assertRaises(OSError):
            s2.child_put(1, I1, R1, True, IP4)
        self.assertEqual(e2.programs + e2.erases, 0)

    def test_readonly_mount_of_a_blank_partition_creates_nothing(self):
        e = FlashEmu(MemoryBacking(4 * BLOCK_SIZE))
        s = Store(e, None, readonly=True)
        self.assertEqual(s.secrets(), [])
        self.assertEqual(e.programs + e.erases, 0)


class TestHookIntegration(unittest.TestCase):
    def test_the_map_persisted_through_the_hook_answers_esp_after_a_reboot(self):
        from qcd import wire
        from portable_util import SA
        from qcd.hook import QcdHook
        from qcd.tokens import make_token

        e, s = fresh()
        h = QcdHook(keys=s, rate=None)
        peer = ("192.0.2.7", 4500)
        sa = SA(I1, R1, True, peer)
        h.ike_up(sa, [], [0xC0FFEE01], 0)
        h.child_up(sa, 0xC0FFEE02, 0)
        h.child_down(sa, 0xC0FFEE02, 0)
        # The device reboots: a new hook over the remounted store.
        e, s = reboot(e)
        h = QcdHook(keys=s, rate=None)
        esp = bytes([0xC0, 0xFF, 0xEE, 0x01]) + bytes(4) + bytes(32)
        ans = wire.parse(h.unknown_esp_spi(esp, peer, 1000))
        toks = [n[3] for n in ans.notifies() if n[0] == wire.QUICK_CRASH_DETECTION]
        self.assertEqual(toks, [make_token(s.secrets()[0], I1, R1)])
        esp2 = bytes([0xC0, 0xFF, 0xEE, 0x02]) + bytes(36)
        self.assertEqual(h.unknown_esp_spi(esp2, peer, 1000), None)


def crafted(seq, recs, erases=1):
    """A 4-block image whose block 0 is a CRC-valid log block (FORMAT.md)
    with the given seq and records (type, value, body): what a crafted or
    damaged partition may hold. The rest is erased. Written record by
    record into the backing: no image-sized buffer on a board's heap."""
    import struct
    from binascii import crc32

    b = MemoryBacking(4 * BLOCK_SIZE)
    sd = crc32(struct.pack("<I", seq))
    pos = 32
    for typ, v, body in recs:
        ln = 48 if len(body) > 8 else 16
        r = bytearray(ln)
        struct.pack_into("<BBHI", r, 0, ((ln // 16 - 1) << 6) | typ, 0, 0, v)
        r[8 : 8 + len(body)] = body
        struct.pack_into("<I", r, ln - 8, crc32(b"\xff" * 48))
        struct.pack_into("<I", r, ln - 4, crc32(bytes(r[: ln - 4]), sd))
        b.write(pos, bytes(r))
        pos += ln
    h = bytearray(32)
    h[0:4] = b"QCDP"
    struct.pack_into("<BBHIIIII", h, 4, 1, 4, 0, seq, 0, 1, erases, crc32(b"\xff" * 48))
    struct.pack_into("<I", h, 28, crc32(bytes(h[:28])))
    b.write(0, bytes(h))
    return b


class TestCraftedCounters(unittest.TestCase):
    # Issue 13 §4: on MicroPython a seq of 0xFFFFFFFF made the mount raise
    # OverflowError (a boot loop). Every counter at the end of its u32 range
    # stops or saturates by FORMAT.md's rule, and the mount never raises.
    SECRET = det_bytes(9, 32)

    def test_a_seq_of_0xffffffff_mounts_read_only_with_its_secret(self):
        e = FlashEmu(crafted(0xFFFFFFFF, [(2, 1, self.SECRET), (1, 3, b"")]))
        s = Store(e, Rng())
        self.assertEqual(s.secrets(), [self.SECRET])
        self.assertTrue("seq exhausted" in s.status()["readonly"])
        self.assertEqual(e.violations, 0)

    def test_a_generation_of_0xffffffff_refuses_rollover_and_keeps_working(self):
        s = Store(FlashEmu(crafted(1, [(2, 0xFFFFFFFF, self.SECRET)])), Rng())
        self.assertEqual(s.secrets(), [self.SECRET])
        with self.assertRaises(ValueError):
            s.rollover(det_bytes(10, 32))
        s.child_put(5, I1, R1, True, IP4)
        self.assertEqual(s.child_count(), 1)

    def test_a_boot_count_and_erase_estimate_of_0xffffffff_saturate(self):
        b = crafted(1, [(2, 1, self.SECRET), (1, 0xFFFFFFFF, b"")], erases=0xFFFFFFFF)
        s = Store(FlashEmu(b), Rng())
        self.assertEqual(s.boot_count, 0xFFFFFFFF)
        s2 = Store(FlashEmu(b), Rng())
        self.assertEqual(s2.boot_count, 0xFFFFFFFF)
        self.assertEqual(s2.secrets(), [self.SECRET])


if __name__ == "__main__":
    unittest.main()

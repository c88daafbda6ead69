# qcdhost.emu.flash: the flash the store is tested on must enforce what real
# (and encrypted) ESP32 flash demands, and cut power where it is told to.
import unittest

from qcdhost.emu import flash as flashemu
from qcdhost.emu.flash import BLOCK_SIZE, FlashEmu, FlashViolation, MemoryBacking, PowerCut

ERR_INVALID_ARG = -0x102
ERR_INVALID_SIZE = -0x104
ERR_NOT_ALLOWED = -0x10D
ERR_FLASH_OP_FAIL = -0x6001


def emu(blocks=4, **kw):
    return FlashEmu(MemoryBacking(blocks * BLOCK_SIZE), **kw)


def read(e, n, off, ln):
    b = bytearray(ln)
    e.readblocks(n, b, off)
    return bytes(b)


def program_zeros(e, n):
    """Program all of block n to 0, 256 bytes at a time."""
    z = bytes(256)
    for off in range(0, BLOCK_SIZE, 256):
        e.writeblocks(n, z, off)


def block_shape(e, n):
    """"old" (all 0), "erased" (all 0xFF) or "half": block n read 256
    bytes at a time (no 4 KiB buffer on a board's heap)."""
    zeros = ffs = True
    for off in range(0, BLOCK_SIZE, 256):
        got = read(e, n, off, 256)
        zeros = zeros and got == b"\x00" * 256
        ffs = ffs and got == b"\xff" * 256
    return "old" if zeros else "erased" if ffs else "half"


def reads_differ(e, n):
    """Two reads of block n differ somewhere (compared 256 bytes at a time)."""
    for off in range(0, BLOCK_SIZE, 256):
        if read(e, n, off, 256) != read(e, n, off, 256):
            return True
    return False


def errno_of(fn):
    try:
        fn()
    except OSError as ex:
        return ex.args[0]
    return None


class TestBlockProtocol(unittest.TestCase):
    def test_ioctl_answers_like_esp32_partition(self):
        e = emu(6)
        self.assertEqual(e.ioctl(4, 0), 6)
        self.assertEqual(e.ioctl(5, 0), 4096)
        self.assertEqual(e.ioctl(1, 0), 0)
        self.assertEqual(e.ioctl(2, 0), 0)
        self.assertEqual(e.ioctl(3, 0), 0)
        self.assertEqual(e.ioctl(6, 2), 0)
        self.assertEqual(e.ioctl(99, 0), None)

    def test_erased_flash_reads_ff(self):
        self.assertEqual(read(emu(), 1, 100, 32), b"\xff" * 32)

    def test_program_and_read_back_with_offset(self):
        e = emu()
        e.writeblocks(2, b"hello world!", 40)
        self.assertEqual(read(e, 2, 40, 12), b"hello world!")
        self.assertEqual(read(e, 2, 52, 4), b"\xff" * 4)

    def test_simple_writeblocks_erases_then_writes(self):
        e = emu()
        e.writeblocks(1, b"\x00" * 16, 0)
        e.writeblocks(1, b"\xab" * BLOCK_SIZE)
        self.assertEqual(read(e, 1, 0, 16), b"\xab" * 16)
        self.assertEqual(e.erase_counts[1], 1)

    def test_simple_writeblocks_needs_whole_blocks(self):
        e = emu()
        self.assertEqual(errno_of(lambda: e.writeblocks(1, b"\x00" * 100)), ERR_INVALID_SIZE)

    def test_ranges_are_checked_like_esp_idf(self):
        e = emu(4)
        self.assertEqual(errno_of(lambda: e.readblocks(5, bytearray(4))), ERR_INVALID_ARG)
        self.assertEqual(errno_of(lambda: e.readblocks(3, bytearray(8), 4092)), ERR_INVALID_SIZE)
        self.assertEqual(errno_of(lambda: e.writeblocks(3, b"\x00" * 8, 4092)), ERR_INVALID_SIZE)
        self.assertEqual(errno_of(lambda: e.ioctl(6, 5)), ERR_INVALID_ARG)
        self.assertEqual(errno_of(lambda: e.ioctl(6, 4)), ERR_INVALID_SIZE)  # start == end: ESP-IDF says size

    def test_readonly_partition_refuses_writes(self):
        e = emu(readonly=True)
        self.assertEqual(errno_of(lambda: e.writeblocks(0, b"\x00" * 16, 0)), ERR_NOT_ALLOWED)
        self.assertEqual(errno_of(lambda: e.ioctl(6, 0)), ERR_NOT_ALLOWED)


class TestNorRules(unittest.TestCase):
    def test_setting_a_bit_is_a_loud_violation(self):
        e = emu()
        e.writeblocks(0, b"\x0f", 10)
        with self.assertRaises(FlashViolation):
            e.writeblocks(0, b"\xf0", 10)
        self.assertEqual(e.violations, 1)
        self.assertEqual(read(e, 0, 10, 1), b"\x0f")  # nothing was written

    def test_a_violation_is_not_an_oserror(self):
        # so a store that handles OSError (worn flash) cannot swallow it
        self.assertFalse(issubclass(FlashViolation, OSError))
        self.assertFalse(issubclass(PowerCut, Exception))

    def test_clearing_more_bits_is_allowed_only_when_asked(self):
        e = emu(reprogram=True)
        e.writeblocks(0, b"\x0f", 10)
        e.writeblocks(0, b"\x07", 10)
        self.assertEqual(read(e, 0, 10, 1), b"\x07")

    def test_a_program_over_programmed_bytes_is_a_violation_by_default(self):
        # The store promises never to program a byte twice: even a second
        # program that would only clear bits is flagged.
        e = emu()
        e.writeblocks(0, b"\x0f", 10)
        with self.assertRaises(FlashViolation):
            e.writeblocks(0, b"\xff\x07", 9)
        self.assertEqual(e.violations, 1)
        self.assertEqual(read(e, 0, 9, 2), b"\xff\x0f")
        e.writeblocks(0, b"\x00", 11)  # the erased byte next to it is fine

    def test_erase_is_per_block_and_restores_ff(self):
        e = emu()
        e.writeblocks(0, b"\x00" * 32, 0)
        e.writeblocks(1, b"\x00" * 32, 0)
        e.ioctl(6, 0)
        self.assertEqual(read(e, 0, 0, 32), b"\xff" * 32)
        self.assertEqual(read(e, 1, 0, 32), b"\x00" * 32)
        e.writeblocks(0, b"\x12" * 32, 0)  # writable again after the erase


class TestEncryption(unittest.TestCase):
    def test_erased_flash_reads_pseudo_random_not_ff(self):
        e = emu(encrypted=True)
        a = read(e, 0, 0, 64)
        self.assertFalse(a == b"\xff" * 64)
        self.assertFalse(a[0:16] == a[16:32])
        self.assertFalse(read(e, 1, 0, 64) == a)  # depends on the address
        self.assertEqual(read(e.reboot(), 0, 0, 64), a)  # and is stable

    def test_plaintext_round_trip_and_ciphertext_in_the_image(self):
        e = emu(encrypted=True)
        e.writeblocks(1, b"secret secret!!!" * 2, 32)
        self.assertEqual(read(e, 1, 32, 32), b"secret secret!!!" * 2)
        self.assertFalse(e.physical(BLOCK_SIZE + 32, 32) == b"secret secret!!!" * 2)

    def test_writes_must_be_16_byte_aligned(self):
        e = emu(encrypted=True)
        self.assertEqual(errno_of(lambda: e.writeblocks(0, b"\x00" * 16, 8)), ERR_INVALID_ARG)
        self.assertEqual(errno_of(lambda: e.writeblocks(0, b"\x00" * 20, 16)), ERR_INVALID_SIZE)

    def test_a_chunk_is_programmed_at_most_once_per_erase(self):
        e = emu(encrypted=True)
        e.writeblocks(0, b"\xff" * 15 + b"\xfe", 16)
        # Even a write that would only clear bits of the plaintext is refused:
        # on encrypted flash it ANDs two unrelated ciphertexts.
        with self.assertRaises(FlashViolation):
            e.writeblocks(0, b"\x00" * 16, 16)
        e.ioctl(6, 0)
        e.writeblocks(0, b"\x00" * 16, 16)
        self.assertEqual(read(e, 0, 16, 16), b"\x00" * 16)

    def test_mode_and_key_survive_reboot(self):
        e = emu(encrypted=True)
        e.writeblocks(0, b"abcdefghijklmnop", 0)
        e2 = FlashEmu(e.backing)  # no mode given: the sidecar says encrypted
        self.assertTrue(e2.encrypted)
        self.assertEqual(read(e2, 0, 0, 16), b"abcdefghijklmnop")


class TestPowerCut(unittest.TestCase):
    def test_the_nth_operation_is_torn_and_then_everything_fails(self):
        e = emu(cut_at=2, seed=5)
        e.writeblocks(0, b"\x00" * 64, 0)  # operation 1: whole
        with self.assertRaises(PowerCut):
            e.writeblocks(0, b"\x00" * 64, 64)  # operation 2: torn
        for call in (lambda: e.readblocks(0, bytearray(4)), lambda: e.writeblocks(0, b"\x00", 200), lambda: e.ioctl(6, 1)):
            with self.assertRaises(PowerCut):
                call()
        e2 = e.reboot()
        self.assertEqual(read(e2, 0, 0, 64), b"\x00" * 64)
        torn = read(e2, 0, 64, 64)
        # Only bits the interrupted program clears can have been cleared: here
        # any pattern; and nothing beyond its range.
        self.assertEqual(read(e2, 0, 128, 16), b"\xff" * 16)
        self.assertTrue(len(torn) == 64)

    def test_torn_programs_take_many_shapes(self):
        shapes = set()
        for seed in range(40):
            e = emu(cut_at=1, seed=seed)
            try:
                e.writeblocks(0, b"\x00" * 64, 0)
            except PowerCut:
                pass
            got = read(e.reboot(), 0, 0, 64)
            shapes.add("none" if got == b"\xff" * 64 else "all" if got == b"\x00" * 64 else "part")
        self.assertEqual(shapes, {"none", "all", "part"})

    def test_a_torn_erase_leaves_a_half_erased_block(self):
        seen = set()
        for seed in range(30):
            e = emu()
            program_zeros(e, 0)
            e.cut_at = e.ops + 1
            e.rand = flashemu._Rand(seed)
            try:
                e.ioctl(6, 0)
            except PowerCut:
                pass
            seen.add(block_shape(e.reboot(), 0))
        self.assertTrue("half" in seen)

    def test_simple_writeblocks_is_an_erase_then_a_program(self):
        e = emu(cut_at=2)
        e.writeblocks(0, b"\x00" * 16, 0)
        e2 = e.reboot(cut_at=2)
        with self.assertRaises(PowerCut):
            e2.writeblocks(0, b"\x11" * BLOCK_SIZE)  # erase (1) then program (2: torn)
        self.assertEqual(e2.ops, 2)


class TestUnstableBits(unittest.TestCase):
    def torn(self, seed, data=b"\x00" * 48, off=32):
        e = emu(cut_at=1, seed=seed, unstable=True)
        try:
            e.writeblocks(0, data, off)
        except PowerCut:
            pass
        return e.reboot(seed=seed + 1000)

    def test_a_torn_program_leaves_bits_that_read_differently_each_time(self):
        flips = 0
        for seed in range(20):
            e = self.torn(seed)
            reads = set(read(e, 0, 32, 48) for _ in range(8))
            if len(reads) > 1:
                flips += 1
                self.assertTrue(e.meta.get("weak"))
        self.assertTrue(flips >= 5)

    def test_a_torn_program_that_did_not_start_can_read_as_erased_once(self):
        # The case a store must survive: the area reads erased on one read,
        # and not on the next.
        both = 0
        for seed in range(40):
            e = self.torn(seed)
            reads = [read(e, 0, 32, 48) for _ in range(16)]
            if b"\xff" * 48 in reads and any(r != b"\xff" * 48 for r in reads):
                both += 1
        self.assertTrue(both >= 1)

    def test_a_program_over_unstable_bits_is_a_violation_until_erased(self):
        for seed in range(20):
            e = self.torn(seed)
            if not e.meta.get("weak"):
                continue
            off = e.unstable_bits(0)[0][0]
            with self.assertRaises(FlashViolation):
                e.writeblocks(0, b"\xff" * 16, off - off % 16)
            e.ioctl(6, 0)
            self.assertFalse(e.meta.get("weak"))
            self.assertEqual(read(e, 0, 0, 128), b"\xff" * 128)
            e.writeblocks(0, b"\x00" * 16, off - off % 16)
            return
        self.fail("no torn program left unstable bits")

    def test_a_torn_erase_leaves_unstable_bits(self):
        seen = 0
        for seed in range(12):
            e = emu(unstable=True)
            program_zeros(e, 0)
            e.cut_at = e.ops + 1
            e.rand = flashemu._Rand(seed)
            try:
                e.ioctl(6, 0)
            except PowerCut:
                pass
            e2 = e.reboot()
            if reads_differ(e2, 0):
                seen += 1
        self.assertTrue(seen >= 3)

    def test_without_the_option_torn_bits_are_stable(self):
        for seed in range(10):
            e = emu(cut_at=1, seed=seed)
            try:
                e.writeblocks(0, b"\x00" * 48, 32)
            except PowerCut:
                pass
            e = e.reboot()
            self.assertEqual(read(e, 0, 32, 48), read(e, 0, 32, 48))
            self.assertFalse(e.meta.get("weak"))


class TestWear(unittest.TestCase):
    def test_erase_counters_survive_reboot(self):
        e = emu()
        for _ in range(3):
            e.ioctl(6, 1)
        self.assertEqual(e.reboot().erase_counts, [0, 3, 0, 0])

    def test_worn_block_fails_to_erase(self):
        e = emu()
        e.wear_out(2, 2, flashemu.ERASE_FAILS)
        e.ioctl(6, 2)
        e.ioctl(6, 2)
        self.assertEqual(errno_of(lambda: e.ioctl(6, 2)), ERR_FLASH_OP_FAIL)
        self.assertEqual(errno_of(lambda: e.reboot().ioctl(6, 2)), ERR_FLASH_OP_FAIL)

    def test_worn_block_with_stuck_bits_reads_back_wrong_without_a_violation(self):
        e = emu()
        e.wear_out(1, 1, flashemu.STUCK_BITS)
        e.ioctl(6, 1)  # the first erase still works
        self.assertEqual(read(e, 1, 0, BLOCK_SIZE), b"\xff" * BLOCK_SIZE)
        e.ioctl(6, 1)
        self.assertFalse(read(e, 1, 0, BLOCK_SIZE) == b"\xff" * BLOCK_SIZE)
        e.writeblocks(1, b"\xff" * BLOCK_SIZE, 0)  # no violation: the cells are at fault
        self.assertEqual(e.violations, 0)
        self.assertFalse(read(e, 1, 0, BLOCK_SIZE) == b"\xff" * BLOCK_SIZE)


if __name__ == "__main__":
    unittest.main()

# Flash wear of the qcd store next to the alternatives, on the same emulated
# 64 KiB partition (qcdhost.emu.flash, 16 blocks of 4096 bytes), same workloads,
# one run (issue 3):
#
#   qcd      lib/qcd/store.py
#   naive    bench/naive_store.py: fixed slots, each update rewrites its block in place
#   lfs-rw   LittleFS (littlefs-python, the C library MicroPython's VfsLfs2 uses),
#            with MicroPython's ESP32 settings, the whole map in one file rewritten
#            on each update (open "wb", write, close)
#   lfs-app  the same LittleFS, a 32-byte record appended to a log file per update
#            (open "ab", write, close), the file rewritten with the live entries
#            when it holds more than 1.5x the live entries (at least 64 more)
#
# Workloads (time is simulated, nothing sleeps):
#   steady   50 live Child SAs on 5 IKE SAs; each minute one created and the
#            oldest deleted; a reboot a day
#   heavy    500 live Child SAs on 50 IKE SAs; each second one rekeyed (a new
#            Child SA on the same IKE SA, the old one deleted); a reboot a day
#
# An update is one Child SA created or deleted. Its logical size, the same for
# every store: a create is the entry, Child SPI (4) + SPI-I (8) + SPI-R (8) +
# role (1) + IPv4 peer (4) = 25 bytes; a delete is the Child SPI, 4 bytes.
# Write amplification = bytes programmed / logical bytes.
#
#   python3 bench/store_bench.py [--quick]
# prints `RESULT workload/store {json}` per run (bench/section_store.py reads them).
import json
import os
import struct
import sys
import time

from naive_store import NaiveStore  # bench/, the script's own directory

from qcd.store import Store
from qcdhost.emu import flash as flashemu

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

BLOCKS = 16
CYCLES = 100000  # erase cycles per block (ESP-FAQ: typical 100k)
PUT_BYTES = 25
DROP_BYTES = 4
MINUTES_PER_YEAR = 525960
WORKLOADS = {
    # name: (live Child SAs, IKE SAs, updates per year, updates between reboots)
    "steady": (50, 5, 2 * MINUTES_PER_YEAR, 2 * 1440),
    "heavy": (500, 50, 2 * 60 * MINUTES_PER_YEAR, 2 * 86400),
}
SECRET = b"\x5a" * 32


def ike_sa(i):
    h = struct.pack(">I", i)
    return (b"\x11\x22\x33\x44" + h, b"\x55\x66\x77\x88" + h, i % 2 == 0, bytes([192, 0, 2, 1 + i % 200]))


def workload(name, updates):
    """Yields ("put", spi, spi_i, spi_r, initiator, ip), ("drop", spi) and
    ("reboot",) events: first the live set is built (not counted), then
    `updates` counted updates."""
    live, n_ike, _, per_boot = WORKLOADS[name]
    spis = []
    nxt = [0x10000000]

    def new_child(k):
        nxt[0] += 7919
        spi = nxt[0]
        spis.append((spi, k))
        return ("put", spi) + ike_sa(k)

    for i in range(live):
        yield new_child(i % n_ike)
    yield ("start",)
    done = 0
    while done < updates:
        # the oldest Child SA is rekeyed: a new one on its IKE SA, the old deleted
        old, k = spis.pop(0)
        yield new_child(k)
        yield ("drop", old)
        done += 2
        if done % per_boot < 2:
            yield ("reboot",)


class EmuContext(object):
    """littlefs-python user context over the flash emulator."""

    def __init__(self, emu):
        self.emu = emu

    def read(self, cfg, block, off, size):
        b = bytearray(size)
        self.emu.readblocks(block, b, off)
        return b

    def prog(self, cfg, block, off, data):
        self.emu.writeblocks(block, data, off)
        return 0

    def erase(self, cfg, block):
        self.emu.ioctl(6, block)
        return 0

    def sync(self, cfg):
        return 0


def lfs_mount(emu, fmt=False):
    from littlefs import LittleFS

    # MicroPython's VfsLfs2 on ESP32 (extmod/vfs_lfsx.c, vfs_lfs.c defaults):
    # readsize=progsize=lookahead=32, cache_size = 4 * max(read, prog) = 128,
    # block_cycles = 100; blocks of the partition's 4096 bytes.
    fs = LittleFS(context=EmuContext(emu), mount=False, block_size=4096, block_count=BLOCKS,
                  read_size=32, prog_size=32, cache_size=128, lookahead_size=32, block_cycles=100)
    if fmt:
        fs.format()
    fs.mount()
    return fs


def rec32(op, spi, e=None):
    # the user's 32-byte record: op, Child SPI, SPI-I, SPI-R, role, IPv4, padding
    if e is None:
        return struct.pack("<BI27x", op, spi)
    return struct.pack("<BI8s8sB4s6x", op, spi, e[0], e[1], 1 if e[2] else 0, e[3])


class LfsUser:
    """How a MicroPython user would keep the map in LittleFS files."""

    def __init__(self, emu, mode, fmt=False):
        self.mode = mode
        self.fs = lfs_mount(emu, fmt)
        self.map = {}
        self.nrec = 0
        if fmt:
            with self.fs.open("secret.bin", "wb") as f:
                f.write(SECRET)
            with self.fs.open("boot.bin", "wb") as f:
                f.write(struct.pack("<I", 0))
            with self.fs.open("map.bin", "wb") as f:
                pass
        with self.fs.open("secret.bin", "rb") as f:
            self.secret = f.read()
        with self.fs.open("boot.bin", "rb") as f:
            self.boot = struct.unpack("<I", f.read())[0] + 1
        with self.fs.open("boot.bin", "wb") as f:
            f.write(struct.pack("<I", self.boot))
        with self.fs.open("map.bin", "rb") as f:
            data = f.read()
        for i in range(0, len(data), 32):
            op, spi = struct.unpack_from("<BI", data, i)
            if op == 1:
                _, _, a, b, r, ip = struct.unpack_from("<BI8s8sB4s", data, i)
                self.map[spi] = (a, b, bool(r), ip)
            else:
                self.map.pop(spi, None)
            self.nrec += 1

    def _rewrite(self):
        with self.fs.open("map.bin", "wb") as f:
            f.write(b"".join(rec32(1, s, e) for s, e in self.map.items()))
        self.nrec = len(self.map)

    def _update(self, rec):
        if self.mode == "rewrite":
            self._rewrite()
        else:
            with self.fs.open("map.bin", "ab") as f:
                f.write(rec)
            self.nrec += 1
            if self.nrec > len(self.map) + max(64, len(self.map) // 2):
                self._rewrite()

    def child_put(self, spi, a, b, r, ip):
        self.map[spi] = (a, b, r, ip)
        self._update(rec32(1, spi, self.map[spi]))

    def child_drop(self, spi):
        if self.map.pop(spi, None) is not None:
            self._update(rec32(2, spi))


def make(kind, emu, fmt, wl):
    live = WORKLOADS[wl][0]
    if kind == "qcd":
        return Store(emu, None, max_children=live + 8, initial_secret=SECRET)
    if kind == "naive":
        return NaiveStore(emu, SECRET, slots=live + 8)
    return LfsUser(emu, "rewrite" if kind == "lfs-rw" else "append", fmt)


def run(kind, wl, updates):
    backing = flashemu.MemoryBacking(BLOCKS * 4096)
    emu = flashemu.FlashEmu(backing)
    st = make(kind, emu, True, wl)
    counting = False
    base = None
    logical = 0
    n = 0
    t0 = time.time()
    for ev in workload(wl, updates):
        k = ev[0]
        if k == "start":
            counting = True
            base = (list(emu.erase_counts), emu.bytes_programmed + 0, emu.erases)
            continue
        if k == "reboot":
            bp = emu.bytes_programmed
            emu = emu.reboot()  # erase counters live in the sidecar; carry this one over
            emu.bytes_programmed = bp
            st = make(kind, emu, False, wl)
            continue
        if k == "put":
            st.child_put(*ev[1:])
            logical += PUT_BYTES if counting else 0
        else:
            st.child_drop(ev[1])
            logical += DROP_BYTES if counting else 0
        n += 1 if counting else 0
    dt = time.time() - t0
    per_block = [emu.erase_counts[b] - base[0][b] for b in range(BLOCKS)]
    programmed = emu.bytes_programmed - base[1]
    # Mount cost: a reboot on the final image, counting what is read to come
    # up with the secret and the map (LittleFS: mount, then read the files).
    e2 = emu.reboot()
    st2 = make(kind, e2, False, wl)
    mount_read = e2.bytes_read
    # Mount time: the same reboot on five snapshots of the final image
    # (wall clock on CPython, the emulator's own work included), the median.
    times = []
    for _ in range(5):
        e3 = flashemu.FlashEmu(backing.copy())
        t1 = time.perf_counter()
        make(kind, e3, False, wl)
        times.append(time.perf_counter() - t1)
    mount_ms = sorted(times)[2] * 1000
    live, _, per_year, _ = WORKLOADS[wl]
    mx = max(per_block)
    mean = sum(per_block) / float(BLOCKS)
    life = CYCLES / (mx / float(n) * per_year) if mx else float("inf")
    return {
        "store": kind, "workload": wl, "updates": n, "seconds": round(dt, 1),
        "erases": sum(per_block), "erases_max_per_1e6": mx * 1e6 / n, "erases_mean_per_1e6": mean * 1e6 / n,
        "programmed": programmed, "programmed_per_update": programmed / float(n), "logical": logical,
        "wa": programmed / float(logical), "life_years": life, "mount_read_bytes": mount_read, "mount_ms": round(mount_ms, 2),
        "partition_bytes": BLOCKS * 4096, "violations": emu.violations,
        "per_block": per_block,
    }


def main():
    quick = "--quick" in sys.argv
    # Updates simulated per run. The qcd store runs a full 10^6; the others
    # erase once or more per update, so fewer updates reach their steady state.
    plan = [
        ("steady", "qcd", 1000000), ("steady", "naive", 50000), ("steady", "lfs-rw", 100000), ("steady", "lfs-app", 100000),
        ("heavy", "qcd", 1000000), ("heavy", "naive", 50000), ("heavy", "lfs-rw", 10000), ("heavy", "lfs-app", 100000),
    ]
    for wl, kind, n in plan:
        if quick:
            n = max(2000, n // 20)
        r = run(kind, wl, n)
        print("RESULT %s/%s %s" % (wl, kind, json.dumps(r)), flush=True)


if __name__ == "__main__":
    main()

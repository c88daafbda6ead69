# Heap used by a mounted store on MicroPython (the WebAssembly port): the qcd
# store and the naive one (bench/naive_store.py), each holding the live map of
# the steady (50 Child SAs on 5 IKE SAs) and heavy (500 on 50) workloads, on
# an emulated 64 KiB partition. Prints `RESULT name value` lines.
#
#   node host/qcdhost/emu/wasm/run.mjs --path lib/qcd:/lib/qcd --path lib/ikebase:/lib/ikebase --path host/qcdhost/emu/flash.py:/lib/qcdhost/emu/flash.py \
#        --path bench/naive_store.py:/lib/naive_store.py bench/store_ram.py
#
# A heap figure is gc.mem_alloc() after a collection that really ran: on this
# port only at the top level, so each measurement is its own _mpwasm_steps step.
import gc
import struct

from qcdhost.emu import flash as flashemu
import naive_store  # noqa: F401 (imported before the first mark: only qcd.store is counted)

HEAP = {}
KEEP = {}
SECRET = b"\x5a" * 32


def result(name, value):
    print("RESULT %s %s" % (name, value))


def ike_sa(i):
    h = struct.pack(">I", i)
    return (b"\x11\x22\x33\x44" + h, b"\x55\x66\x77\x88" + h, i % 2 == 0, bytes([192, 0, 2, 1 + i % 200]))


def import_store():
    import qcd.store  # noqa: F401

    gc.collect()


def prepare(kind, live, n_ike):
    def step():
        from naive_store import NaiveStore
        from qcd.store import Store

        emu = flashemu.FlashEmu(flashemu.MemoryBacking(16 * 4096))
        if kind == "qcd":
            st = Store(emu, None, max_children=live + 8, initial_secret=SECRET)
        else:
            st = NaiveStore(emu, SECRET, slots=live + 8)
        for i in range(live):
            st.child_put(0x10000000 + 7919 * i, *ike_sa(i % n_ike))
        KEEP["emu"] = emu.reboot()  # what the next mount reads
        gc.collect()

    return step


def mount(kind, live):
    def step():
        from naive_store import NaiveStore
        from qcd.store import Store

        emu = KEEP["emu"]
        if kind == "qcd":
            KEEP["store"] = Store(emu, None, max_children=live + 8)
        else:
            KEEP["store"] = NaiveStore(emu, SECRET, slots=live + 8)
        if KEEP["store"].child_count() != live:
            raise RuntimeError("%s store lost entries" % kind)
        gc.collect()

    return step


def mark(name):
    def step():
        gc.collect()
        HEAP[name] = gc.mem_alloc()

    return step


def report(name, before, after):
    def step():
        result(name, HEAP[after] - HEAP[before])
        KEEP.clear()
        gc.collect()

    return step


steps = [gc.collect, mark("start"), import_store, mark("imported"), report("heap_import_store_bytes", "start", "imported")]
for kind in ("qcd", "naive"):
    for wl, live, n_ike in (("steady", 50, 5), ("heavy", 500, 50)):
        name = "%s_%s" % (kind, wl)
        steps += [prepare(kind, live, n_ike), mark(name + "_0"), mount(kind, live), mark(name + "_1"), report("heap_%s_bytes" % name, name + "_0", name + "_1")]

try:
    _mpwasm_steps.extend(steps)  # noqa: F821 (host/qcdhost/emu/wasm/run.mjs)
except NameError:  # a real board: its gc.collect() works inline
    for st in steps:
        st()

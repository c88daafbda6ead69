# Runs on MicroPython's unix port under bench/heap_bisect.py, in a heap of
# fixed size (micropython -X heapsize=N):
#
#   heap_probe.py import FILE             import the modules FILE names, one a
#                                         line (what the app has imported once
#                                         its IKE SA is up; a file, because
#                                         the 32-bit unix port of v1.27.0
#                                         crashes on an argument of 200+ bytes)
#   heap_probe.py delta FILE MODULE       import FILE's modules but MODULE (those
#                                         MODULE imports), then MODULE: what it
#                                         adds to the heap ("HEAPPROBE ok delta=B")
#   heap_probe.py app CONFIG HOLD_MS      the firmware app (firmware/qcdapp.py)
#                                         until one IKE SA with its Child SA is
#                                         up and then HOLD_MS longer
#
# Prints one line "HEAPPROBE ok live=B modules=..." (B: gc.mem_alloc() after
# a collection at the end; modules: what is in sys.modules) and exits 0, or
# "HEAPPROBE fail ..." and exits 1. A MemoryError anywhere is a failure,
# also one the app catches and logs (its state then says "failed"), the
# engine counts (out_of_memory: a datagram dropped, a step postponed) or the
# QCD hook reports ("qcd: internal error in ...: MemoryError").
import gc
import sys
import time

SA_TIMEOUT_MS = 20000


def done(ok, what=""):
    gc.collect()
    print("HEAPPROBE %s live=%d modules=%s %s" % ("ok" if ok else "fail", gc.mem_alloc(), ",".join(sorted(sys.modules)), what))
    sys.exit(0 if ok else 1)


def probe_import(path):
    with open(path) as f:
        names = f.read().split()
    if "qcdapp" in names:
        # as on a board: main.py imports qcdapp, whose main() sets the
        # collection threshold before it imports the rest
        import qcdapp

        qcdapp._gc_threshold(qcdapp.DEFAULT_GC_THRESHOLD)
    for n in names:
        __import__(n)
    done(True)


def probe_delta(path, module):
    with open(path) as f:
        names = f.read().split()
    for n in names:
        if n != module:
            __import__(n)
    gc.collect()
    before = gc.mem_alloc()
    __import__(module)
    gc.collect()
    print("HEAPPROBE ok delta=%d" % (gc.mem_alloc() - before))
    sys.exit(0)


def probe_app(config, hold_ms):
    import qcdapp

    # A MemoryError that the app or the hook caught and logged (a datagram
    # dropped, a step postponed, a hook event lost) fails the probe too.
    oom = []
    log = qcdapp.App.log

    def watch(self, line):
        if "MemoryError" in line or "out of memory" in line:
            oom.append(line)
        log(self, line)

    qcdapp.App.log = watch
    t0 = time.ticks_ms()
    up = [None, 0]  # when the SA came up; live heap then

    def tick():
        qcdapp.APP.feed()
        e = qcdapp.APP.engine
        now = time.ticks_ms()
        if up[0] is None:
            if e is not None and e.children and [s for s in e.sas.values() if s.state == "ESTABLISHED"]:
                up[0] = now
                gc.collect()
                up[1] = gc.mem_alloc()
            elif time.ticks_diff(now, t0) > SA_TIMEOUT_MS:
                return True
        elif time.ticks_diff(now, up[0]) >= hold_ms:
            return True
        return False

    qcdapp._tick = tick
    app = qcdapp.main(config)
    if up[0] is None:
        done(False, "no IKE SA within %d ms; app state: %s" % (SA_TIMEOUT_MS, app.state))
    if app.state != "stopped":
        done(False, "app state: %s" % app.state)
    if oom or app.engine.counters["out_of_memory"] or app.engine.counters["hook_errors"]:
        done(False, "out of memory, caught: %r; counters out_of_memory=%d hook_errors=%d" % (oom[:3], app.engine.counters["out_of_memory"], app.engine.counters["hook_errors"]))
    sas = [s for s in app.engine.sas.values() if s.state == "ESTABLISHED"]
    done(bool(sas), "up_live=%d held_ms=%d sas=%d handshake_ms=%d" % (up[1], time.ticks_diff(time.ticks_ms(), up[0]), len(sas), time.ticks_diff(up[0], t0)))


try:
    if sys.argv[1] == "import":
        probe_import(sys.argv[2])
    elif sys.argv[1] == "delta":
        probe_delta(sys.argv[2], sys.argv[3])
    else:
        probe_app(sys.argv[2], int(sys.argv[3]))
except MemoryError as e:
    print("HEAPPROBE fail MemoryError: %s" % e)
    sys.exit(1)

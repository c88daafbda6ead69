#!/usr/bin/env python3
"""The smallest MicroPython heap the firmware app runs in, by bisection.

  MICROPYTHON=/path/to/micropython python bench/heap_bisect.py [--hold S]
        [--variants py,mpy[,frozen]] [--probes import,handshake,hold]
  MICROPYTHON=... python bench/heap_bisect.py --quick [--near KIB] [--hold S]
  MICROPYTHON=... MICROPYLIB=DIR python bench/heap_bisect.py --suite HEAP [--modules M1,M2]

MICROPYTHON is a build of MicroPython's unix port (ideally 32-bit, as an
ESP32 is) whose heap is fixed by `-X heapsize=N`; the WebAssembly port
cannot tell this figure (it grows its heap on demand and collects only at
top level). MICROPYLIB (optional) is a folder of micropython-lib modules the
device set imports and the unix port lacks (e.g. hmac.py), copied beside the
code as a board would have them installed. MICROPYTHON_FROZEN (optional) is
the same port built with the device set, the firmware app and
bench/mp_esp32.py frozen in: the "frozen" variant runs with no code in /lib.

For each variant (the device set of lib/ and firmware/qcdapp.py as .py, as
.mpy from this repository's mpy-cross with the options `make deploy` uses
(-O3 unless --mpy-opt says otherwise), or frozen) and each probe:

  import     import what the app has imported once its IKE SA is up
  handshake  the app (firmware/qcdapp.py: config, store on the `qcd`
             partition, QCD maker, IKE loop) until one IKE SA and its Child
             SA are up with a gateway (qcd-peer, QCD taker, on
             loopback): the handshake's peak
  hold       the same, then S seconds more (default 20) with a liveness
             check from the device every 2 s: the app running

With --deltas, also each module's import cost (RESULT <variant>_delta_<module>):
the live heap it adds when imported after the modules it imports itself
(its own code, names and objects, not theirs).

it bisects N (1 KiB steps, -X heapsize=N) for the smallest heap in which the
probe succeeds, then runs N twice more and moves up 1 KiB until three runs
in a row succeed (a fixed heap fragments; success is not quite monotonic in
N). It also reports the live heap (gc.mem_alloc() after a collection) at
the end of each probe in a big heap. esp32.Partition is bench/mp_esp32.py
over an image file (its bytes are not in the heap); there is no Wi-Fi.

--quick measures one lever in a few minutes: only the mpy variant (unless
--variants says otherwise) and only the handshake and hold probes (unless
--probes says otherwise), no live import figure, a handshake instead of a
held SA as the first run in a big heap, and a bisection that starts in a
window of +-WINDOW KiB (default 8) around --near KIB (default: the last
final .mpy figure, 134; then each probe's figure for the next), widened in steps of the window until its top
passes and its bottom fails. The answer is the same rule's as a full run's
(three runs in a row succeed), so quick figures compare with full ones.

--suite HEAP runs host_tests/portable instead, as .mpy (with the portable
host modules and MICROPYLIB's unittest), one test module per process as
`make test-board` runs one per soft reset: each module's result in HEAP
bytes and the smallest heap (1 KiB steps) in which it passes.

Prints one line per figure, "RESULT name value".
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LIB = os.path.join(ROOT, "lib")

PROBE = os.environ.get("HEAP_PROBE") or os.path.join(HERE, "heap_probe.py")
STANDIN = os.path.join(HERE, "mp_esp32.py")
KIB = 1024
LOW, HIGH = 16 * KIB, 1024 * KIB
BIG = 2048 * KIB  # "a big heap" for the live figures
QUICK_NEAR = 134  # KiB: --quick's default --near, the last final .mpy figure (bench/results.md)
PARTITION = 64 * KIB
OUT_KEEP = int(os.environ.get("HEAP_OUT_KEEP", "6000"))  # characters of a probe's output kept (--show)
LINE = re.compile(r"HEAPPROBE (ok|fail) (.*)")


def device_files(variant="py"):
    """[(host path, path under /lib)] of what `qcdboard deploy --app` puts
    in /lib: the device set of lib/ and the firmware app; as .mpy without
    what such a deploy leaves off (remote.MPY_LEAVE_OFF) unless --mpy-comb."""
    from qcdhost.esp import remote

    leave_off = remote.MPY_LEAVE_OFF if variant == "mpy" and not MPY_COMB[0] else ()
    out = [(h, d[len("lib/") :]) for h, d in remote.package_files() if d not in leave_off]
    return out + [(h, d[len("lib/") :]) for h, d in remote.APP_FILES if d.startswith("lib/")]


GC_THRESHOLD = [None]  # --gc-threshold: the app's device.gc_threshold (default: the app's own)
MPY_COMB = [False]  # --mpy-comb: the mpy variant with what a .mpy deploy leaves off (remote.MPY_LEAVE_OFF)
MPY_OPT = [None]  # mpy-cross -O for the mpy variant: --mpy-opt, default deploy's (qcdhost.esp.remote.MPY_OPT)


def mpy_cross(src, dst, opt=0):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    subprocess.run([sys.executable, "-m", "mpy_cross", "-O%d" % opt, "-o", dst, src], check=True, capture_output=True)


def stage(variant, top):
    """A probe folder: top/lib (the code, as variant says) and the probe.
    Returns the total bytes of code in top/lib."""
    lib = os.path.join(top, "lib")
    os.makedirs(lib)
    shutil.copy(PROBE, os.path.join(top, "heap_probe.py"))
    files = list(device_files(variant))
    extra = os.environ.get("MICROPYLIB")
    if extra:
        for f in sorted(os.listdir(extra)):
            if f.endswith((".py", ".mpy")):
                files.append((os.path.join(extra, f), f))
    code = 0
    if variant == "frozen":
        return code  # everything is in the firmware
    for host, rel in files:
        dst = os.path.join(lib, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if variant == "mpy" and host.endswith(".py"):
            dst = dst[:-3] + ".mpy"
            mpy_cross(host, dst, MPY_OPT[0])
        else:
            shutil.copy(host, dst)
        code += os.path.getsize(dst)
    # The stand-in is .mpy in both variants: the same small cost in each.
    mpy_cross(STANDIN, os.path.join(lib, "esp32.mpy"))
    return code


class Runner:
    def __init__(self, micropython, top, gw_ports, hold_s):
        self.mp = micropython
        self.top = top
        self.gw_ports = gw_ports
        self.hold_s = hold_s
        self.runs = 0
        self.module = None  # the delta probe's module

    def app_config(self):
        from qcdhost import harness

        cfg = harness.app_config(self.gw_ports, dpd_s=2)
        cfg["device"] = {"watchdog_s": 0, "partition": "qcd"}
        if GC_THRESHOLD[0] is not None:
            cfg["device"]["gc_threshold"] = GC_THRESHOLD[0]
        path = os.path.join(self.top, "qcd.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        return path

    def run(self, heap, probe, modules=""):
        """(ok, info dict) of one probe run in a heap of `heap` bytes."""
        self.runs += 1
        img = os.path.join(self.top, "qcd.img")
        with open(img, "wb") as f:
            f.write(b"\xff" * PARTITION)  # a blank partition: the first boot formats it
        # MICROPYPATH replaces the default path: keep .frozen (the frozen variant's code) first.
        env = dict(os.environ, MICROPYPATH=".frozen:" + os.path.join(self.top, "lib"), QCD_BENCH_IMAGE=img)
        if probe in ("import", "delta"):
            path = os.path.join(self.top, "modules.txt")
            with open(path, "w") as f:
                f.write("\n".join(modules.split(",")))
            args = [probe, path] + ([self.module] if probe == "delta" else [])
        else:
            args = ["app", self.app_config(), str(int(self.hold_s * 1000) if probe == "hold" else 0)]
        try:
            p = subprocess.run([self.mp, "-X", "heapsize=%d" % heap, os.path.join(self.top, "heap_probe.py")] + args,
                               capture_output=True, text=True, timeout=90, cwd=self.top, env=env)
        except subprocess.TimeoutExpired:
            return False, {"why": "timeout"}
        m = None
        for line in p.stdout.splitlines():
            mm = LINE.search(line)
            if mm:
                m = mm
        if m is None:
            return False, {"why": (p.stdout + p.stderr)[-300:], "out": (p.stdout + p.stderr)[-OUT_KEEP:]}
        info = dict(kv.split("=", 1) for kv in m.group(2).split() if "=" in kv)
        info["out"] = (p.stdout + p.stderr)[-OUT_KEEP:]
        return m.group(1) == "ok" and p.returncode == 0, info

    def smallest(self, probe, modules="", lo=LOW, hi=HIGH, near=None, window=8):
        """The smallest heap (1 KiB steps) where the probe succeeds three
        times in a row, or None if it fails at `hi`. With `near` (KiB),
        the bisection starts in near +- window KiB, widened until its top
        succeeds and its bottom fails (a few runs instead of ten)."""
        lo_k, hi_k = lo // KIB, hi // KIB
        if near:
            top = min(near + window, hi_k)
            while not self.run(top * KIB, probe, modules)[0]:
                if top >= hi_k:
                    return None
                top = min(top + window, hi_k)
            bottom = max(min(near, top) - window, lo_k)
            while bottom > lo_k and self.run(bottom * KIB, probe, modules)[0]:
                top, bottom = bottom, max(bottom - window, lo_k)
            lo_k, hi_k = bottom, top
        elif not self.run(hi, probe, modules)[0]:
            return None
        while hi_k - lo_k > 1:
            mid = (lo_k + hi_k) // 2
            if self.run(mid * KIB, probe, modules)[0]:
                hi_k = mid
            else:
                lo_k = mid
        n = hi_k
        while n * KIB <= hi:
            if all(self.run(n * KIB, probe, modules)[0] for _ in range(2)):
                return n * KIB
            n += 1
        return None


def measure(micropython, variant, hold_s, probes, log=print, deltas=False, show=None, near=None, window=8):
    """{figure: value} for one variant. With `near` (KiB, --quick): the
    first run in a big heap is a handshake (no live_hold, no live_import),
    and each bisection starts around `near`."""
    from qcdhost.harness import Peer, gateway_config

    out = {}
    top = tempfile.mkdtemp(prefix="qcd-heap-%s-" % variant)
    gw = None
    try:
        out["code_bytes"] = stage(variant, top)
        gw = Peer(top, "gw", gateway_config(), pcap=False).start()
        r = Runner(micropython, top, gw.ports(), hold_s)
        first = "handshake" if near else "hold"
        ok, info = r.run(BIG, first)
        if not ok:
            raise RuntimeError("the app does not run on %s even in %d KiB (%s):\n%s" % (variant, BIG // KIB, info.get("why", ""), info.get("out", "")))
        modules = [m for m in info["modules"].split(",") if m not in ("__main__", "heap_probe")]
        out["modules"] = modules
        out["live_" + first] = int(info["live"])
        out["live_up"] = int(info["up_live"])
        out["handshake_ms"] = int(info["handshake_ms"])
        if not near:
            ok, info = r.run(BIG, "import", ",".join(modules))
            out["live_import"] = int(info["live"]) if ok else None
        if show:
            for probe in probes:
                ok, info = r.run(show, probe, ",".join(modules))
                log("heap bisect: %s, %s in %d B: %s\n%s" % (variant, probe, show, "ok" if ok else "FAILED " + info.get("why", ""), info.get("out", "")))
            return out
        if deltas:
            log("heap bisect: %s, import cost per module ..." % variant)
            for m in modules:
                # what importing m alone loads: m and the modules it needs
                ok, info = r.run(BIG, "import", m)
                needs = [n for n in info.get("modules", "").split(",") if n not in ("__main__", "heap_probe", "")]
                r.module = m
                ok, info = r.run(BIG, "delta", ",".join(needs)) if ok else (False, {})
                out["delta_" + m] = int(info["delta"]) if ok else None
        for probe in probes:
            log("heap bisect: %s, %s ..." % (variant, probe))
            out["min_" + probe] = r.smallest(probe, ",".join(modules), near=near, window=window)
            if near and out["min_" + probe]:
                near = out["min_" + probe] // KIB  # the next probe's figure is close to this one
        out["runs"] = r.runs
    finally:
        if gw is not None:
            gw.kill()
        shutil.rmtree(top, ignore_errors=True)
    return out


def stage_suite(top):
    """top/lib: the device set, the portable host modules and MICROPYLIB
    (unittest) as .mpy; top/tests: host_tests/portable as .mpy and run.py."""
    from qcdhost import devset
    from qcdhost.esp import remote

    files = [(h, d[len("lib/") :]) for h, d in remote.package_files()]
    files += [(h, d[len("/lib/") :]) for h, d in devset.portable_host_paths()]
    extra = os.environ.get("MICROPYLIB")
    if extra:
        for d, _, fs in os.walk(extra):
            for f in fs:
                if f.endswith(".py"):
                    files.append((os.path.join(d, f), os.path.relpath(os.path.join(d, f), extra)))
    for host, rel in files:
        mpy_cross(host, os.path.join(top, "lib", rel[:-3] + ".mpy"))
    here = os.path.join(ROOT, "host_tests", "portable")
    os.makedirs(os.path.join(top, "tests"))
    for f in sorted(os.listdir(here)):
        if f == "run.py":
            shutil.copy(os.path.join(here, f), os.path.join(top, "tests", f))
        elif f.endswith(".py"):
            mpy_cross(os.path.join(here, f), os.path.join(top, "tests", f[:-3] + ".mpy"))
    return sorted(f[:-3] for f in os.listdir(here) if f.startswith("test_") and f.endswith(".py"))


def suite(micropython, heap, log=print, only=None):
    """The portable suite as .mpy, one module per process (a board's soft
    reset between modules): per module (ran, failures, errors) in `heap`
    bytes, and the smallest heap in which it passes."""
    top = tempfile.mkdtemp(prefix="qcd-heap-suite-")
    out = {}
    try:
        modules = stage_suite(top)
        if only:
            unknown = [m for m in only if m not in modules]
            if unknown:
                raise SystemExit("heap_bisect: no such portable test module: %s" % ", ".join(unknown))
            modules = [m for m in modules if m in only]
        env = dict(os.environ, MICROPYPATH=os.path.join(top, "lib"))

        def once(m, n):
            try:
                p = subprocess.run([micropython, "-X", "heapsize=%d" % n, os.path.join(top, "tests", "run.py"), m],
                                   capture_output=True, text=True, timeout=900, cwd=os.path.join(top, "tests"), env=env)
            except subprocess.TimeoutExpired:
                return None
            mm = re.search(r"PORTABLE ran=(\d+) failures=(\d+) errors=(\d+)", p.stdout)
            return tuple(map(int, mm.groups())) if mm else None

        for m in modules:
            log("heap bisect: suite, %s ..." % m)
            res = once(m, heap)
            lo, hi = LOW // KIB, 512
            ok = lambda n: (lambda t: t is not None and t[0] > 0 and not t[1] and not t[2])(once(m, n * KIB))  # noqa: E731
            smallest = None
            if ok(hi):
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if ok(mid):
                        hi = mid
                    else:
                        lo = mid
                smallest = hi * KIB
            out[m] = (res, smallest)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hold", type=float, default=20.0, help="seconds the app runs after its SA is up (hold probe)")
    ap.add_argument("--variants", default=None, help="py,mpy (and frozen with MICROPYTHON_FROZEN)")
    ap.add_argument("--probes", default=None, help="comma separated, of import,handshake,hold (default: all three; --quick: handshake,hold); empty: none")
    ap.add_argument("--deltas", action="store_true", help="also each module's import cost: the heap it adds when imported after the modules it imports")
    ap.add_argument("--mpy-opt", type=int, default=None, metavar="N", help="mpy-cross -ON for the mpy variant (default: what `make deploy` uses, qcdhost.esp.remote.MPY_OPT)")
    ap.add_argument("--mpy-comb", action="store_true", help="the mpy variant with X25519's comb, which a .mpy deploy leaves off unless asked (qcdhost.esp.remote.MPY_LEAVE_OFF)")
    ap.add_argument("--gc-threshold", type=int, default=None, metavar="B", help="the app's device.gc_threshold (default: the app's default; 0: collect only when full)")
    ap.add_argument("--quick", action="store_true", help="one lever in a few minutes: mpy only, probes handshake,hold, bisection around --near (see above)")
    ap.add_argument("--near", type=int, default=None, metavar="KIB", help="start the bisection around KIB (default with --quick: %d)" % QUICK_NEAR)
    ap.add_argument("--window", type=int, default=8, metavar="KIB", help="with --near: the starting window +- KIB, and the step it widens by (default 8)")
    ap.add_argument("--show", type=int, metavar="HEAP", help="instead of bisecting: run each probe once in HEAP bytes and print its output")
    ap.add_argument("--suite", type=int, metavar="HEAP", help="instead: the portable suite, one module per process, in HEAP bytes (needs unittest in MICROPYLIB)")
    ap.add_argument("--modules", default=None, help="with --suite: only these test modules (comma-separated)")
    a = ap.parse_args(argv)
    from qcdhost.esp import remote

    MPY_OPT[0] = remote.MPY_OPT if a.mpy_opt is None else a.mpy_opt
    GC_THRESHOLD[0] = a.gc_threshold
    MPY_COMB[0] = a.mpy_comb
    mp = os.environ.get("MICROPYTHON")
    if not mp:
        print("not measured: no fixed-heap micropython (set MICROPYTHON=/path/to/micropython, MicroPython's unix port)")
        return 0
    if a.suite:
        res = suite(mp, a.suite, only=a.modules.split(",") if a.modules else None)
        for m, (t, smallest) in sorted(res.items()):
            print("RESULT suite_%s %s min=%s" % (m, "ran=%d,failures=%d,errors=%d" % t if t else "no-summary", smallest), flush=True)
        return 0
    frozen = os.environ.get("MICROPYTHON_FROZEN")
    near = a.near or (QUICK_NEAR if a.quick else None)
    if a.variants:
        variants = a.variants.split(",")
    else:
        variants = ["mpy"] if a.quick else ["py", "mpy"] + (["frozen"] if frozen else [])
    probes = a.probes if a.probes is not None else ("handshake,hold" if a.quick else "import,handshake,hold")
    for v in variants:
        if v == "frozen" and not frozen:
            raise SystemExit("heap_bisect: the frozen variant needs MICROPYTHON_FROZEN")
        res = measure(frozen if v == "frozen" else mp, v, a.hold, [p for p in probes.split(",") if p], deltas=a.deltas, show=a.show, near=near, window=a.window)
        if v == "mpy":
            res["mpy_opt"] = MPY_OPT[0]
        for k, val in res.items():
            print("RESULT %s_%s %s" % (v, k, ",".join(val) if isinstance(val, list) else val), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

# Section: the heap the firmware app needs (issue 10 §3), measured on
# MicroPython's unix port with a fixed heap (bench/heap_bisect.py).
#
# MICROPYTHON=/path/to/micropython (the unix port, 32-bit like an ESP32;
# `-X heapsize=N` fixes its heap) is needed; without it the section says so
# and measures nothing (CI has none: the WebAssembly port grows its heap on
# demand and cannot tell the smallest heap that works). MICROPYTHON_FROZEN:
# the same port with the device set frozen in, for the frozen column;
# MICROPYLIB: micropython-lib modules the unix port lacks, if the device set
# imports any. HEAP_HOLD_S: how long the app runs with its SA up (default 20).
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOOL = os.path.join(HERE, "heap_bisect.py")
TARGETS = {"mpy": 110 * 1024, "frozen": 48 * 1024}


def kb(v):
    return "-" if v in (None, "None", "") else "%.1f KB" % (int(v) / 1024.0)


def verdict(value, target):
    if value in (None, "None"):
        return "not reached (did not run in 1 MiB)"
    d = int(value) - target
    if d <= 0:
        return "met, %.1f KB to spare" % (-d / 1024.0)
    return "**missed by %.1f KB**" % (d / 1024.0)


def run(bench):
    mp = os.environ.get("MICROPYTHON")
    head = ["## Memory: the smallest heap the firmware app runs in", ""]
    if not mp:
        return "\n".join(head + [
            "not measured: no fixed-heap micropython (set MICROPYTHON=/path/to/micropython, a build of MicroPython's"
            " unix port; `bench/heap_bisect.py` says what it measures). The figures of record are in the last run that had one;"
            " see the note in docs/device.md (What fits where).", ""])
    hold = os.environ.get("HEAP_HOLD_S", "20")
    if os.environ.get("HEAP_RESULTS"):
        # The RESULT lines of earlier heap_bisect.py runs (files, comma
        # separated): the bisection takes 20 minutes a form.
        text = ""
        for f in os.environ["HEAP_RESULTS"].split(","):
            with open(f) as fh:
                text += fh.read()
    else:
        p = subprocess.run([sys.executable, TOOL, "--hold", hold, "--deltas"], capture_output=True, text=True, cwd=ROOT, timeout=7200)
        if p.returncode:
            raise RuntimeError("heap_bisect.py failed:\n" + p.stderr[-3000:] + p.stdout[-2000:])
        text = p.stdout
    r = bench.results(text)
    variants = [v for v in ("py", "mpy", "frozen") if ("%s_code_bytes" % v) in r]
    ver = subprocess.run([mp, "-c", "import sys; v = sys.implementation.version; print('MicroPython %d.%d.%d, %d-bit' % (v[0], v[1], v[2], 64 if sys.maxsize > 2**31 else 32))"],
                         capture_output=True, text=True).stdout.strip()
    frozen = os.environ.get("MICROPYTHON_FROZEN")
    names = {"py": "code as .py", "mpy": "code as .mpy", "frozen": "code frozen"}
    if r.get("mpy_opt") not in (None, "None"):
        names["mpy"] = "code as .mpy (-O%s, as `make deploy`)" % r["mpy_opt"]

    def row(label, key, fmt=kb):
        return "| %s | %s |" % (label, " | ".join(fmt(r.get("%s_%s" % (v, key))) for v in variants))

    lines = head + [
        "`MICROPYTHON=... python bench/heap_bisect.py --hold %s --deltas` on MicroPython's unix port (%s; %s)."
        " For each form of the code it bisects `-X heapsize=N` in 1 KiB steps for the smallest heap in which"
        " the probe succeeds three runs in a row: *import* (the modules the app has loaded once its SA is up),"
        " *handshake* (the firmware app, firmware/qcdapp.py, from boot, store mounted on a blank 64 KiB `qcd`"
        " partition, QCD maker, until one IKE SA and its Child SA are up with a qcd-peer gateway on loopback:"
        " the handshake's peak) and *SA held* (the same, then %s s with a liveness check from the device every"
        " 2 s). *Live* is `gc.mem_alloc()` after a collection, in a 2 MiB heap. esp32.Partition is"
        " bench/mp_esp32.py over an image file (compiled to .mpy in every column); no Wi-Fi, no watchdog."
        % (hold, ver, "frozen: the same build with the device set, the app and bench/mp_esp32.py frozen in" if frozen else "no frozen build given", hold),
        "",
        "| figure | " + " | ".join(names[v] for v in variants) + " |",
        "|---|" + "---:|" * len(variants),
        row("code in /lib (bytes of files)", "code_bytes", lambda v: "-" if v in (None, "None") else "%d B" % int(v)),
        row("live heap after import", "live_import"),
        row("live heap, SA just up", "live_up"),
        row("live heap, SA held", "live_hold"),
        row("**smallest heap: import**", "min_import"),
        row("**smallest heap: handshake**", "min_handshake"),
        row("**smallest heap: SA held (the app running)**", "min_hold"),
        row("probe runs", "runs", lambda v: str(v)),
        "",
    ]
    for v in ("mpy", "frozen"):
        if v in variants:
            both = [r.get("%s_min_%s" % (v, k)) for k in ("handshake", "hold")]
            worst = None if None in both or "None" in both else max(int(x) for x in both)
            lines.append("Target for %s: at most %d KB for the app running (the larger of handshake and SA held): %s." % (names[v], TARGETS[v] // 1024, verdict(worst, TARGETS[v])))
    if "frozen" not in variants and "mpy_min_hold" in r:
        # Estimate: freezing moves the code's bytecode, constants and qstrs to
        # flash; what stays in RAM is the module dicts, classes and functions
        # objects, and the data. Upper bound of the saving: the whole live
        # heap after import.
        est = int(r["mpy_min_hold"]) - int(r["mpy_live_import"])
        lines.append("Frozen (no frozen build given), estimated as the .mpy figure minus the live heap after import"
                     " (an upper bound of what freezing saves: module dicts, classes and function objects stay in RAM): %s; target 48 KB: %s."
                     % (kb(est), verdict(est, TARGETS["frozen"])))
    lines.append("")
    lines.append("Modules loaded with the SA up: %s." % r.get("mpy_modules", r.get("py_modules", "?")).replace(",", ", "))
    dv = [v for v in variants if any(k.startswith(v + "_delta_") for k in r)]
    if dv:
        mods = sorted({k.split("_delta_", 1)[1] for k in r if "_delta_" in k},
                      key=lambda m: -int(r.get("%s_delta_%s" % (dv[0], m)) or 0))
        lines += ["", "Import cost per module (`--deltas`: the live heap a module adds when imported after the modules it"
                  " imports itself; its own code, names and objects), largest first:", "",
                  "| module | " + " | ".join(names[v] for v in dv) + " |", "|---|" + "---:|" * len(dv)]
        for m in mods:
            lines.append("| %s | %s |" % (m, " | ".join(kb(r.get("%s_delta_%s" % (v, m))) for v in dv)))
        lines.append("| (sum) | %s |" % " | ".join(kb(sum(int(r[k]) for k in r if k.startswith(v + "_delta_") and r[k] not in (None, "None"))) for v in dv))
        lines += ["", "A module's figure includes a new qstr pool when its names are the ones that fill the last pool"
                  " (MicroPython doubles the pool's entries: the 640-entry pool is about 4.5 KB): that step lands on"
                  " whichever module crosses it in that import order, so the sum, not each row, is what the code costs;"
                  " qstrs stay in the heap even when a module is unloaded."]
    suite = sorted((k[len("suite_") :], v) for k, v in r.items() if k.startswith("suite_"))
    if suite:
        lines += ["", "The portable suite as .mpy, one module per process (as `make test-board` runs one per soft reset),"
                  " `bench/heap_bisect.py --suite 112640` (unittest from micropython-lib in MICROPYLIB):", "",
                  "| test module | in a 110 KiB heap | smallest heap it passes in |", "|---|---|---:|"]
        for m, v in suite:
            res, _, mn = v.partition(" min=")
            lines.append("| %s | %s | %s |" % (m, res.replace(",", ", "), kb(mn) if mn != "None" else "over 512 KiB"))
    return "\n".join(lines)

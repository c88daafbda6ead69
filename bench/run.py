#!/usr/bin/env python3
"""Run every benchmark and write bench/results.md.

Benchmarks are not tests: they measure, they do not pass or fail. Each
section is a module bench/section_*.py with a `run(bench)` function that
returns Markdown; `bench` (the Bench object below) runs code on CPython and on
the WebAssembly MicroPython and says what machine this is. Ratios are measured
side by side in one run, because this machine is shared and noisy.

  make bench                    all sections
  make bench ONLY=core          one section (by name)
"""
import datetime
import glob
import importlib.util
import os
import platform
import subprocess
import sys
import time

from qcdhost import devset
from qcdhost.paths import WASM_DIR

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LIB = os.path.join(ROOT, "lib")
# The host modules that run on MicroPython too (MemoryKeys, the flash
# emulator), copied beside lib/ for every MicroPython run.
HOST_PATHS = tuple("%s:%s" % hp for hp in devset.portable_host_paths())


class Bench:
    root = ROOT
    lib = LIB

    def log(self, msg):
        print("bench: %s" % msg, flush=True)

    def results(self, text):
        out = {}
        for line in text.splitlines():
            if line.startswith("RESULT "):
                _, name, value = line.split(None, 2)
                out[name] = value
        return out

    def cpython(self, script, *args, timeout=3600):
        p = subprocess.run([sys.executable, script, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        if p.returncode:
            raise RuntimeError("%s failed on CPython:\n%s" % (script, p.stderr[-2000:]))
        return self.results(p.stdout)

    def micropython(self, script, *args, paths=("lib/qcd:/lib/qcd", "lib/ikebase:/lib/ikebase"), timeout=3600):
        cmd = ["node", os.path.join(WASM_DIR, "run.mjs")]
        for p in tuple(paths) + HOST_PATHS:
            cmd += ["--path", p]
        cmd += [script, *map(str, args)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        if p.returncode:
            raise RuntimeError("%s failed on MicroPython:\n%s" % (script, p.stderr[-2000:]))
        return self.results(p.stdout)


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return "%s, %d cores, Python %s, Node.js %s, MicroPython 1.27.0 (WebAssembly)" % (cpu, os.cpu_count() or 0, platform.python_version(), node)


def main():
    only = os.environ.get("ONLY")
    sections = sorted(glob.glob(os.path.join(HERE, "section_*.py")))
    bench = Bench()
    parts = []
    t0 = time.time()
    for path in sections:
        name = os.path.basename(path)[len("section_") : -3]
        if only and name not in only.split(","):
            continue
        bench.log("section %s ..." % name)
        spec = importlib.util.spec_from_file_location("section_" + name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        t1 = time.time()
        parts.append(mod.run(bench).strip())
        bench.log("section %s done in %.0f s" % (name, time.time() - t1))
    head = [
        "# Benchmark results",
        "",
        "Produced by `make bench` on %s UTC, on %s. Took %.0f s."
        % (datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"), machine(), time.time() - t0),
        "Every figure below comes from that run. The machine is shared; ratios are measured side by side.",
        "",
    ]
    text = "\n".join(head) + "\n" + "\n\n".join(parts) + "\n"
    out = os.path.join(HERE, "results.md" if not only else "results-%s.md" % only.replace(",", "-"))
    with open(out, "w") as f:
        f.write(text)
    print(text)
    bench.log("wrote %s" % os.path.relpath(out, ROOT))


if __name__ == "__main__":
    main()

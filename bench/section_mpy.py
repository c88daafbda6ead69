# Section: .mpy size of lib/ for the ESP32 family (issue: onto the device).
# Not a speed figure: the bytes mpy-cross makes of each module for
# -march=xtensawin (ESP32, ESP32-S3) and -march=rv32imc (ESP32-C3), the same
# table as `make mpy` (tools/mpy_build.py), with the lib/qcd target.
import os
import sys
import tempfile


def run(bench):
    sys.path.insert(0, os.path.join(bench.root, "tools"))
    import mpy_build

    with tempfile.TemporaryDirectory() as tmp:
        sizes, errors = mpy_build.build(tmp)
    lines = [
        "## Size on the device: lib/ as .mpy",
        "",
        "`python tools/mpy_build.py` (%s, -O0: line numbers kept). Bytes of .mpy per module; the"
        " architectures differ only where a module has native code. The target is for lib/qcd's"
        " device set, what goes onto a board; host-only modules are counted apart." % mpy_build.mpy_cross_version(),
        "",
        mpy_build.report(sizes, markdown=True),
    ]
    if errors:
        lines += ["", "Did not compile: " + "; ".join(errors)]
    return "\n".join(lines)

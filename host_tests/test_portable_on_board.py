# The portable suite on a board over mpremote (`make test-board PORT=...`,
# `qcdboard test`), run here against the virtual board with networking (its
# esp32 firmware modules: cryptolib, socket): the device set, the flash
# emulator and host_tests/portable copied as .mpy, one test module per
# mpremote session (a soft reset between modules). That the suite also fits
# a 110 KB heap is measured on a fixed-heap unix build (docs/device.md, What
# fits where); the WebAssembly board grows its heap and cannot tell.
import os
import re

import pytest
from vboard_util import VBoard

from support import ROOT

PORTABLE = os.path.join(ROOT, "host_tests", "portable")


@pytest.fixture(scope="module")
def vb(tmp_path_factory):
    b = VBoard(tmp_path_factory.mktemp("vboard-test"), extra=["--net"]).start()
    yield b
    b.stop()


@pytest.mark.timeout(900)  # 60-105 s measured at load 3-5 (pytest.ini: timeout)
def test_portable_suite_passes_on_the_board_one_module_per_reset(vb):
    r = vb.qcdboard("test", "--port", vb.tty, timeout=1800)
    out = r.stdout + r.stderr
    modules = sorted(n[:-3] for n in os.listdir(PORTABLE) if n.startswith("test_") and n.endswith(".py"))
    m = re.search(r"PORTABLE-BOARD modules=(\d+) ran=(\d+) failures=(\d+) errors=(\d+) skipped=(\d+)", out)
    assert m, out[-3000:]
    assert r.returncode == 0, out[-3000:]
    n, ran, failures, errors, _skipped = map(int, m.groups())
    assert n == len(modules) and failures == 0 and errors == 0 and ran > len(modules)
    for mod in modules:
        assert "== " + mod in out, mod  # each one ran, in its own session
    # It ran the compiled test modules: the board holds .mpy, not sources.
    assert os.path.exists(os.path.join(vb.fs, "tests", "test_wire.mpy"))
    assert not os.path.exists(os.path.join(vb.fs, "tests", "test_wire.py"))


def test_a_module_that_cannot_run_fails_the_board_run(vb):
    # The runner must turn a missing or broken module into a non-zero exit.
    r = vb.qcdboard("test", "--port", vb.tty, "test_no_such_module", timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[-2000:]
    assert "ERROR: test_no_such_module did not load" in out
    assert "PORTABLE-BOARD modules=1 ran=0 failures=0 errors=1 skipped=0 bad=test_no_such_module" in out

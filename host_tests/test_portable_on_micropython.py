# The portable suite (host_tests/portable, plain unittest) on real MicroPython:
# the WebAssembly port under Node.js. CPython runs the same files through
# pytest directly; this test fails on any failure or error over there.
import os
import re

import pytest

from support import PORTABLE_HOST_FILES, ROOT, run_micropython

PORTABLE = os.path.join(ROOT, "host_tests", "portable")


@pytest.mark.timeout(600)  # 31-59 s measured at load 3-5 (pytest.ini: timeout)
def test_portable_suite_passes_on_micropython():
    p = run_micropython(
        os.path.join(PORTABLE, "run.py"),
        # lib/, the suite, and the host modules it imports there (the flash
        # emulator the store tests run on, MemoryKeys, IKE names)
        paths=[(os.path.join(ROOT, "lib"), "/lib"), (PORTABLE, "/tests")] + PORTABLE_HOST_FILES,
        timeout=1800,
    )
    out = p.stdout + p.stderr
    m = re.search(r"PORTABLE ran=(\d+) failures=(\d+) errors=(\d+) skipped=(\d+)", out)
    assert m, "no summary from the MicroPython run:\n" + out[-4000:]
    ran, failures, errors, _skipped = map(int, m.groups())
    problems = "\n".join(line for line in out.splitlines() if re.search(r"\b(FAIL|ERROR)\b|Error|Traceback", line))
    assert failures == 0 and errors == 0 and p.returncode == 0, problems + "\n" + out[-4000:]
    # Every portable test module must have run there, not just some.
    modules = sorted(n[:-3] for n in os.listdir(PORTABLE) if n.startswith("test_") and n.endswith(".py"))
    for mod in modules:
        assert "== " + mod in out, "%s did not run on MicroPython" % mod
    assert ran > 0


def test_micropython_runner_reports_failures():
    # The runner must turn a failing portable test into a non-zero exit;
    # otherwise the test above could never fail.
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "test_broken.py"), "w") as f:
            f.write("import unittest\nclass T(unittest.TestCase):\n    def test_x(self):\n        self.assertEqual(1, 2)\n")
        p = run_micropython(os.path.join(PORTABLE, "run.py"), paths=[(d, "/tests")])
    assert p.returncode == 1
    assert "PORTABLE ran=1 failures=1" in p.stdout

# Shared test plumbing for the host suite (CPython + pytest); conftest.py
# imports it, tests import it as `support`.
#
# The tests import qcd, ike (lib/, the device code) and qcdhost (the host
# package) as installed (`make venv`: pip install -e .), and run the
# commands as installed: QCDTOOL, QCD_PEER, QCDBOARD, VBOARD are the console
# scripts beside this Python (run as [sys.executable, QCDTOOL, ...]). Tests that need an outside tool (tshark, node, charon, mpy-cross) ask
# for it through `need_tool`: on a developer machine a missing tool skips the
# test with the command that installs it; under CI (CI=true) it fails,
# because .ci/run installs every tool and a skip there would hide a gap.
import os
import shutil
import subprocess
import sys

import pytest

from qcdhost import devset
from qcdhost.paths import WASM_DIR

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, "lib")
TOOLS = os.path.join(ROOT, "tools")  # the checkout's scripts: demo, firmware, package_json
FIRMWARE = os.path.join(ROOT, "firmware")
BIN = os.path.dirname(sys.executable)
QCDTOOL = os.path.join(BIN, "qcdtool")
QCD_PEER = os.path.join(BIN, "qcd-peer")
QCDBOARD = os.path.join(BIN, "qcdboard")
VBOARD = os.path.join(BIN, "vboard")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

def run_fresh(script, *args, timeout=120):
    """script (and its argv) in a fresh CPython, with host_tests and
    host_tests/portable on its path: for what a test must see from a clean
    sys.modules (which modules an import or a step loads). The finished
    process, output as text."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([here, os.path.join(here, "portable")]))
    return subprocess.run([sys.executable, "-c", script] + list(args), capture_output=True, text=True, env=env, timeout=timeout)


MPWASM = WASM_DIR
MPWASM_PKG = os.path.join(MPWASM, "node_modules", "@micropython", "micropython-webassembly-pyscript")


def missing(what, how):
    """Skip (or, under CI, fail) a test whose tool is absent."""
    msg = "%s is not available (%s)" % (what, how)
    if IN_CI:
        pytest.fail(msg + "; under CI every tool must be installed", pytrace=False)
    pytest.skip(msg)


def need_tool(name, how=None):
    path = shutil.which(name)
    if path is None:
        missing(name, how or "apt-get install %s" % name)
    return path


def need_micropython():
    """The command prefix that runs a file on the WebAssembly MicroPython."""
    node = need_tool("node", "install Node.js 20")
    if not os.path.isdir(MPWASM_PKG):
        missing("the MicroPython WebAssembly port", "make node (npm ci in host/qcdhost/emu/wasm)")
    return [node, os.path.join(MPWASM, "run.mjs")]


def run_micropython(script, paths=(), args=(), timeout=600):
    """Run `script` on the WebAssembly MicroPython with host dirs copied in."""
    cmd = need_micropython()
    for host, dest in paths:
        cmd += ["--path", "%s:%s" % (host, dest)]
    cmd.append(script)
    cmd += list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


# What the portable suite imports besides lib/ (qcdhost.devset.PORTABLE_HOST),
# as (host path, MicroPython path) for run_micropython.
PORTABLE_HOST_FILES = devset.portable_host_paths()

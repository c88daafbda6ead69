# Shared test plumbing for the host suite (CPython + pytest); conftest.py
# imports it, tests import it as `support`.
#
# lib/ goes on sys.path so tests import qcd (and ike) exactly as the device
# does. Tests that need an outside tool (tshark, node, charon, mpy-cross) ask
# for it through `need_tool`: on a developer machine a missing tool skips the
# test with the command that installs it; under CI (CI=true) it fails,
# because .ci/run installs every tool and a skip there would hide a gap.
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, "lib")
TOOLS = os.path.join(ROOT, "tools")
if LIB not in sys.path:
    sys.path.insert(0, LIB)

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

MPWASM = os.path.join(TOOLS, "mpwasm")
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
        missing("the MicroPython WebAssembly port", "make node (npm ci in tools/mpwasm)")
    return [node, os.path.join(MPWASM, "run.mjs")]


def run_micropython(script, paths=(), args=(), timeout=600):
    """Run `script` on the WebAssembly MicroPython with host dirs copied in."""
    cmd = need_micropython()
    for host, dest in paths:
        cmd += ["--path", "%s:%s" % (host, dest)]
    cmd.append(script)
    cmd += list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

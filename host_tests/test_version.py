# One version for everything that says one: lib/qcd's __version__ is what the
# Python package (pyproject.toml, dynamic), package.json (mip), the firmware
# app at boot and `qcdboard diag` report (test_vboard_store.py, on the
# virtual board), and each command's --version.
import json
import os
import re
import subprocess
import sys
from importlib import metadata

from support import QCD_PEER, QCDBOARD, QCDTOOL, ROOT, VBOARD

import qcd


def test_version_is_a_plain_release_number():
    assert re.fullmatch(r"\d+\.\d+\.\d+", qcd.__version__), qcd.__version__


def test_python_package_and_package_json_report_lib_qcd_version():
    assert metadata.version("qcd") == qcd.__version__
    with open(os.path.join(ROOT, "package.json")) as f:
        assert json.load(f)["version"] == qcd.__version__
    import qcdhost

    assert qcdhost.__version__ == qcd.__version__


def test_every_command_reports_the_version():
    for cmd in (QCDTOOL, QCD_PEER, QCDBOARD, VBOARD):
        p = subprocess.run([sys.executable, cmd, "--version"], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() == "%s %s" % (os.path.basename(cmd), qcd.__version__)


def test_firmware_app_says_its_version_at_boot(tmp_path):
    # The app itself (firmware/qcdapp.py on CPython, qcdhost.emu.hostapp),
    # with a configuration its setup refuses: the version line comes first.
    cfg = tmp_path / "qcd.json"
    cfg.write_text("[1, 2]")
    p = subprocess.run([sys.executable, "-m", "qcdhost.emu.hostapp", "--image", str(tmp_path / "qcd.img"), "--config", str(cfg)],
                       capture_output=True, text=True, timeout=120)
    lines = p.stdout.splitlines()
    assert lines and lines[0] == "qcd %s" % qcd.__version__, p.stdout + p.stderr
    assert any(line.startswith("setup failed") for line in lines)

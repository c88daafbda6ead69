# The suite runs against the installed package (make venv: pip install -e .);
# pytest.ini puts host_tests/ and host_tests/portable/ on the path for the
# shared helpers (support, peers, portable_util, ...). An editable install
# maps each package of lib/ when it is installed: a package added to lib/
# since then is not importable until `make venv` reinstalls, so say so
# instead of failing in every test that imports it.
import importlib.util

import pytest

from qcdhost import devset


def pytest_configure(config):
    lost = [p for p in devset.packages() if importlib.util.find_spec(p) is None]
    if lost:
        pytest.exit("lib/%s is not installed in this Python: run `make venv` (pip install -e .)" % ", lib/".join(lost), returncode=4)

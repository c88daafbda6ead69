# The firmware app's setup (steps 1-4 of firmware/qcdapp.py): read and check
# the configuration, bring Wi-Fi up, find the `qcd` partition, mount the
# store, build the QCD hook. qcdapp imports this module for each setup
# attempt and drops it (sys.modules) once a setup has worked: none of it is
# needed again, and on a board that loads its code as .mpy its code is heap
# (issue 10 §3). A retry after a failed setup imports it again.
import json

from qcdapp import CONFIG_PATH, SetupError, _absent, _gc_threshold, _import

LABEL = "qcd"
WIFI_TIMEOUT_MS = 30000
BOARDS_HINT = (
    "flash a qcd partition table: `make flash PORT=... BOARD=QCD_ESP32` "
    "(or QCD_ESP32_S3, QCD_ESP32_C3; tables in boards/<BOARD>/partitions-qcd.csv), "
    "or build the firmware for one of those boards (`make firmware BOARD=...`)"
)


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
        import ike  # noqa: F401
    except ImportError as e:
        if _absent(e, "ike"):
            return cfg  # no lib/ike on this board: the IKE loop cannot start anyway
        raise SetupError("lib/ike cannot be imported: %s" % e)
    try:
        from ike import config as ikeconfig

        ikeconfig.Config(cfg)  # every IKE key checked now, before the radio is on
    except ImportError as e:
        # lib/ike is here but something it needs is not: say what
        raise SetupError("lib/ike cannot check %s: %s (a module lib/ike needs is missing from this board: deploy it, or use a firmware that has it)" % (path, e))
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
    peer = cfg.get("peer")
    if isinstance(peer, dict) and isinstance(peer.get("addr"), str):
        # the configured gateway's answers get a rate-limit lane of their
        # own, which a flood from other addresses cannot empty (issue 13 §2)
        kw["gateways"] = [peer["addr"]]
    return qhook.QcdHook(role=role, keys=store, style=style, boot_ms=boot_ms, restrict_to_peer=bool(q.get("restrict_to_peer")), log=log, **kw)


def run(app, config_path):
    """Steps 1-4 into app (config, wlan, partition, store, hook); SetupError
    saying what to do when one of them cannot be done."""
    import esp32
    import os
    import time

    app.config = None
    cfg = load_config(config_path)
    app.config = cfg
    dev = cfg.get("device") or {}
    gt = dev.get("gc_threshold")
    if gt is not None:
        if not isinstance(gt, int) or isinstance(gt, bool) or gt < 0:
            raise SetupError("device.gc_threshold must be an integer >= 0 (bytes; 0: collect only when the heap is full)")
        _gc_threshold(gt)
    network = _import("network")
    if network is None:
        app.log("wifi: skipped, this board has no network module")
    else:
        app.wlan = wifi_up(network, cfg, app, time.ticks_ms, time.ticks_diff, time.sleep_ms)
    app.partition = find_partition(esp32, dev.get("partition", LABEL))
    if app.store is None:
        # mounted once: a retry does not mount (and count a boot) again
        from qcd import store as qstore

        try:
            # unload: the store's code leaves the heap between its rare writes
            app.store = qstore.mount(app.partition, rng=os.urandom, unload=True)
        except ValueError as e:
            raise SetupError("cannot use partition %r: %s; %s" % (dev.get("partition", LABEL), e, BOARDS_HINT))
        app.log("store: %r" % app.store)
    app.hook = make_hook(cfg, app.store, time.ticks_ms(), app.log)

# The qcd firmware app: what main.py runs on an ESP32 (frozen by
# firmware/manifest.py, or copied to /lib by `qcdboard deploy --app`).
#
#   1. read the configuration file (/qcd.json): the IKE peer configuration
#      of lib/ike (docs/config.md: peer, PSK, IDs, traffic selectors, and its
#      "qcd" section) plus "wifi" and "device" sections read here;
#   2. bring Wi-Fi up (before the store: on first boot the store creates the
#      QCD secret with os.urandom, which is true-random only while the radio
#      is on; reference doc §6 and trap 13);
#   3. find the `qcd` partition with esp32.Partition.find(TYPE_DATA, ...)
#      (find() defaults to TYPE_APP) and mount the store on it;
#   4. build the QCD hook on the store and run the IKE engine's device loop
#      with it; the watchdog starts at the loop's first turn and is fed from
#      the loop.
#
# Steps 1-4 are the setup, in firmware/qcdsetup.py: imported for each setup
# attempt and dropped once one has worked (its code is heap on a board that
# loads .mpy). When it fails (no or a bad configuration, Wi-Fi
# not connecting, no `qcd` partition, a store that cannot be used, a module
# missing, out of memory) no watchdog is running: the board stays up with the
# error in APP.state and APP.error (what `qcdboard diag` shows), and main.py
# (main(retry=True)) tries the setup again after device.setup_retry_s, the
# wait doubling up to device.setup_retry_max_s, for as long as it fails. A
# Ctrl-C (mpremote, qcdboard diag) ends that wait at the REPL; resume() goes
# on with it. Each retry re-reads the configuration (fix it with `qcdboard
# deploy --config`) and keeps what already worked: a store mounted once is
# not mounted again, so a retry adds no record to the flash.
#
# Beside other asyncio tasks (firmware/readings.py is the example): setup()
# does steps 1-4 and makes the engine and its tunnel (APP.tunnel, ike.tunnel)
# without starting the loop; serve() is step 5 as a coroutine for
# asyncio.create_task (ike.aio), feeding the watchdog at every wake-up.
#
# Everything it holds stays in qcdapp.APP, so an operator at the REPL (and
# `qcdboard diag`) can look at it: APP.hook, APP.store, APP.state, APP.error,
# and APP.engine, which resume() continues with after a Ctrl-C.
#
# Without a network module, step 2 is skipped with a message; without
# sockets or lib/ike, step 4's loop too (the store is mounted and the hook
# built all the same). The virtual board (vboard) has no network
# module; with --net it has sockets on the host's network, and the IKE loop
# runs there.
import sys

CONFIG_PATH = "/qcd.json"
DEFAULT_WATCHDOG_S = 60  # device.watchdog_s; 0 disables
# device.setup_retry_s / setup_retry_max_s: after a failed setup, wait this
# long before the next attempt, doubling each time up to the maximum
# (0 = no retries: the board stays at the REPL with the error).
DEFAULT_RETRY_S = 10
DEFAULT_RETRY_MAX_S = 600
# device.gc_threshold: collect after this many bytes were allocated since the
# last collection (MicroPython's gc.threshold; 0: only when an allocation
# fails, MicroPython's default). MicroPython never compacts its heap: garbage
# left between long-lived objects (the code being imported, the SA's state)
# becomes holes too small to use later. Collecting early lets those objects
# fill the holes instead (issue 10 §3; the smallest heap that imports the app
# as .mpy: 116 KB without, 106-107 KB with any of 8-32 KB; bench/heap_bisect.py).
# Default (None): a quarter of the heap that is free when the app starts, as
# MicroPython's docs suggest (reference/constrained.rst): a small heap
# collects often and cheaply, a big one (PSRAM) seldom.
DEFAULT_GC_THRESHOLD = None


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
        self.guard = 0  # watchdog seconds, set once the IKE loop runs
        self.wlan = None
        self.log_lines = []
        self.error = None  # why the last setup attempt failed
        self.attempts = 0  # failed setup attempts
        self.retry = False  # main.py: retry a failed setup
        self.retry_s = None  # the wait before the next attempt
        self.stopped = False  # a Ctrl-C ended the setup or its wait
        self.config_path = CONFIG_PATH

    def log(self, line):
        print(line)
        self.log_lines.append(line)
        del self.log_lines[:-20]

    def feed(self):
        if self.wdt is None and self.guard:
            # the IKE loop's first turn: from now on the watchdog guards it
            # (never during the setup: a setup that fails must not reset the
            # board over and over)
            import machine

            self.wdt = start_watchdog(machine, self.guard)
            self.log("watchdog: started, %s s" % self.guard)
        if self.wdt is not None:
            self.wdt.feed()

    def status(self):
        return {"state": self.state, "error": self.error, "attempts": self.attempts, "partition": self.partition.info() if self.partition else None}


APP = None


def _absent(e, name):
    """Whether ImportError `e` says module `name` itself is not there (not a
    module it imports): CPython names it, MicroPython says "no module named
    'name'"."""
    n = getattr(e, "name", None)
    if n is not None:
        return n == name
    return str(e).endswith("'%s'" % name)


def start_watchdog(machine, seconds):
    if not seconds:
        return None
    return machine.WDT(timeout=int(seconds * 1000))


def _import(name):
    try:
        return __import__(name)
    except ImportError:
        return None


def main(config_path=CONFIG_PATH, retry=False):
    """Boot the app: set up, then run the IKE loop. Returns when the loop
    ends (or cannot start), or when the setup failed; with retry (what
    main.py asks for) a failed setup is tried again on the back-off of
    device.setup_retry_s / setup_retry_max_s until it works or a Ctrl-C
    ends the wait."""
    global APP
    _gc_threshold(DEFAULT_GC_THRESHOLD)
    APP = app = App()
    try:
        app.log("qcd %s" % __import__("qcd").__version__)  # the one version (lib/qcd, package.json, pyproject)
    except Exception:  # noqa: BLE001 (no lib/qcd, no memory: the setup says what is wrong)
        pass
    app.config_path = config_path
    app.retry = retry
    return _boot(app)


def _boot(app):
    while True:
        try:
            ok = _attempt(app)
            if ok:
                break
            if not app.retry or not app.retry_s:
                return app
            app.log("setup: attempt %d failed; next in %d s (Ctrl-C: REPL; qcdapp.resume() goes on)" % (app.attempts, app.retry_s))
            _sleep_s(app.retry_s)
        except KeyboardInterrupt:
            app.log("setup: stopped (Ctrl-C) after %d failed attempt(s); qcdapp.resume() goes on with it" % app.attempts)
            app.error = app.error or "setup interrupted"
            app.state = "setup failed: %s" % app.error
            app.stopped = True
            return app
    return _run(app)


def _sleep_s(seconds):
    import time

    time.sleep_ms(int(seconds * 1000))  # Ctrl-C ends it, as on the esp32 port


def _attempt(app):
    """One setup attempt: True when done; else the error is in app.state
    and app.error, and app.retry_s says how long to wait."""
    app.stopped = False
    try:
        import qcdsetup

        qcdsetup.run(app, app.config_path)
        # Setup-only code (issue 10 §3): a board running .mpy gets its heap
        # back once nothing refers to the module (a retry imports it again).
        del qcdsetup
        sys.modules.pop("qcdsetup", None)
        app.error = None
        return True
    except Exception as e:  # noqa: BLE001 (whatever it is, the board must stay diagnosable)
        app.attempts += 1
        try:
            app.error = str(e) if isinstance(e, SetupError) else "%s: %s" % (type(e).__name__, e)
        except MemoryError:
            app.error = "MemoryError"
        app.state = "setup failed: %s" % app.error
        try:
            app.log(app.state)
        except MemoryError:
            pass
        app.retry_s = _backoff(app)
        return False


def _backoff(app):
    dev = (app.config or {}).get("device") or {}
    first = dev.get("setup_retry_s", DEFAULT_RETRY_S)
    most = dev.get("setup_retry_max_s", DEFAULT_RETRY_MAX_S)
    if not isinstance(first, (int, float)) or first <= 0:
        return None
    if not isinstance(most, (int, float)) or most < first:
        most = first
    wait = first
    for _ in range(app.attempts - 1):
        wait = wait * 2
        if wait >= most:
            return most
    return wait


def _gc_threshold(n):
    """Set MicroPython's gc.threshold: n bytes, 0 for none, None for a
    quarter of the free heap. Nothing on CPython (its gc has no threshold)."""
    import gc

    t = getattr(gc, "threshold", None)
    if t is None:
        return
    if n is None:
        gc.collect()
        n = max(gc.mem_free() // 4, 4096)
    t(n if n else -1)


def _forget_setup():
    # The configuration checks are setup-only code (issue 10 §3): once the
    # engine holds its Config, unload them and give their heap back.
    from ike import config

    config.forget_checks()
    import gc

    gc.collect()


def _run(app):
    if _import("socket") is None or _import("select") is None:
        app.state = "ready; IKE not started: this board has no socket module"
        app.log(app.state)
        return app
    try:
        from ike import device
    except ImportError as e:
        app.state = "ready; IKE not started: %s" % ("lib/ike is not on this board" if _absent(e, "ike") else "lib/ike cannot be imported: %s" % e)
        app.log(app.state)
        return app

    if app.engine is None:
        # Kept in APP, so an interruption costs no IKE SA: resume() goes on
        # with the same engine (SAs, timers, clock).
        app.engine = device.new_engine(app.config, app.hook, log=app.log)
        _forget_setup()
    app.state = "running"
    app.guard = (app.config.get("device") or {}).get("watchdog_s", DEFAULT_WATCHDOG_S)
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
    _gc_threshold(DEFAULT_GC_THRESHOLD)
    APP = app = App()
    app.config_path = config_path
    if not _attempt(app):  # whatever failed: APP.state and APP.error say it
        return app
    if _import("socket") is None or _import("select") is None:
        app.state = "ready; IKE not started: this board has no socket module"
        app.log(app.state)
        return app
    from ike import device
    from ike.tunnel import Tunnel

    app.engine = device.new_engine(app.config, app.hook, log=app.log)
    _forget_setup()
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
    app.guard = (app.config.get("device") or {}).get("watchdog_s", DEFAULT_WATCHDOG_S)  # started by the first feed
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
    # watchdog (started by the first feed); never stop.
    APP.feed()
    return False


def resume():
    """Continue after an interruption: the IKE loop with the same engine (its
    IKE SAs and Child SAs go on), hook and store, the sockets bound again on
    the same ports; or, when the setup had not succeeded, the setup and its
    retries."""
    if APP is None:
        return main(retry=True)
    if APP.hook is None:
        return _boot(APP)
    return _run(APP)

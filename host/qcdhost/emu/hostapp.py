"""hostapp: the firmware app (firmware/main.py -> qcdapp) on CPython.

The ESP32 modules the app imports are given to it by host stand-ins, as on
the virtual board (qcdhost.emu.vboard), but with CPython's real sockets, so the
app's whole code path runs, IKE loop included (ike.device: sockets and
select.poll, which CPython has):

  esp32.Partition   the `qcd` partition: the flash emulator
                    (qcdhost.emu.flash) over a partition image file, created
                    erased on first use (a blank partition: the store creates
                    the secret at first boot)
  machine.WDT       counts feeds (a watchdog that never bites)
  time.ticks_ms/ticks_diff/sleep_ms   MicroPython's tick functions, 2^30 wrap
  network           absent: the app skips Wi-Fi and says so

  python -m qcdhost.emu.hostapp --image QCD.img --config CONFIG.json
                     [--blocks N] [--encrypted] [--cut-at N --cut-seed S] [--run readings]

The configuration is the device's (firmware/qcd.json.example: the IKE keys
of docs/config.md, "device" and "qcd"). The app logs to stdout. A power cut
is SIGKILL of this process; --cut-at N tears the Nth flash program/erase of
this boot instead, and SIGUSR1 arms a cut of the next one (the emulator's
power cut: a random part of that write or erase reaches the image, and the
process exits 137 as if the power had gone). tools/demo.py runs devices this way when the
WebAssembly board has no network.
"""
import argparse
import os
import signal
import sys
import time
import types

from qcdhost.emu import flash as flashemu
from qcdhost.paths import FIRMWARE_DIR

QCD_PARTITION_ADDR = 0x200000  # where boards/*/partitions-qcd.csv put `qcd`


def install(image, blocks=16, encrypted=False, cut_at=None, cut_seed=0):
    """Put esp32/machine stand-ins into sys.modules; returns the emulator."""
    if not os.path.exists(image):
        flashemu.create_image(image, blocks, encrypted=encrypted)
    emu = flashemu.FlashEmu(flashemu.FileBacking(image), cut_at=cut_at, seed=cut_seed)

    class Part:
        # esp32.Partition over the emulator: the block protocol plus info().
        def __init__(self, dev):
            self._dev = dev

        def readblocks(self, n, buf, off=0):
            return self._dev.readblocks(n, buf, off)

        def writeblocks(self, n, buf, off=None):
            return self._dev.writeblocks(n, buf, off)

        def ioctl(self, op, arg):
            return self._dev.ioctl(op, arg)

        def info(self):
            return (1, 0x06, QCD_PARTITION_ADDR, self._dev.size, "qcd", self._dev.encrypted)

    class Partition:
        TYPE_APP = 0
        TYPE_DATA = 1
        BOOT = 0
        RUNNING = 1

        @staticmethod
        def find(type=0, subtype=0xFF, label=None, block_size=4096):
            if type == 1 and label in (None, "qcd") and subtype in (0xFF, 0x06):
                return [Part(emu)]
            return []

    class WDT:
        feeds = 0
        timeout = None

        def __init__(self, id=0, timeout=5000):
            WDT.timeout = timeout

        def feed(self):
            WDT.feeds += 1

    esp32 = types.ModuleType("esp32")
    esp32.Partition = Partition
    machine = types.ModuleType("machine")
    machine.WDT = WDT
    machine.reset_cause = lambda: 1  # PWRON_RESET
    sys.modules.update(esp32=esp32, machine=machine)
    time.ticks_ms = lambda: int(time.monotonic() * 1000) & 0x3FFFFFFF
    time.ticks_diff = lambda a, b: ((a - b + 0x20000000) & 0x3FFFFFFF) - 0x20000000
    time.sleep_ms = lambda ms: time.sleep(ms / 1000)
    return emu


class _Firmware:
    """An import finder for the modules firmware/ puts in a board's /lib, so
    that `import qcdsetup` (the app's setup, imported again after the app
    dropped it) works here as on a board, with no sys.path edit."""

    NAMES = ("qcdapp", "qcdsetup", "readings")

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        import importlib.util

        if path is None and name in cls.NAMES:
            return importlib.util.spec_from_file_location(name, os.path.join(FIRMWARE_DIR, name + ".py"))
        return None


def load_app(name="qcdapp"):
    """A module of firmware/ (the app, qcdapp.py, by default; qcdsetup.py,
    readings.py), imported under its own name as the device imports it from
    /lib. The app is loaded first: the other firmware modules import it."""
    import importlib.util

    if _Firmware not in sys.meta_path:
        sys.meta_path.append(_Firmware)
    if name != "qcdapp":
        load_app("qcdapp")
    if name in sys.modules:
        return sys.modules[name]
    if name == "qcdapp":
        # qcdsetup binds the app's names (SetupError): a new app, a new one
        sys.modules.pop("qcdsetup", None)
    spec = importlib.util.spec_from_file_location(name, os.path.join(FIRMWARE_DIR, name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    return mod


def main(argv=None):
    p = argparse.ArgumentParser(prog="hostapp", description="Run the qcd firmware app on CPython with an emulated qcd partition.")
    p.add_argument("--image", required=True, help="qcd partition image (created erased if missing)")
    p.add_argument("--config", required=True, help="the device configuration (JSON)")
    p.add_argument("--blocks", type=int, default=16, help="blocks of a new image (default 16 = 64 KiB)")
    p.add_argument("--encrypted", action="store_true", help="a new image is flash-encrypted")
    p.add_argument("--cut-at", type=int, help="tear the Nth flash operation of this boot (a power cut)")
    p.add_argument("--cut-seed", type=int, default=0, help="how the cut tears it")
    p.add_argument("--run", choices=("qcdapp", "readings"), default="qcdapp", help="what main.py runs: the app (qcdapp.main) or the example app firmware/readings.py (the IKE loop as an asyncio task)")
    a = p.parse_args(argv)
    if not os.path.exists(a.config):
        p.error("no configuration file %s" % a.config)
    emu = install(a.image, a.blocks, a.encrypted, a.cut_at, a.cut_seed)
    sys.stdout.reconfigure(line_buffering=True)

    def arm(_sig, _frame):
        emu.cut_at = emu.ops + 1
        print("hostapp: power cut armed: flash operation %d will be torn" % emu.cut_at, flush=True)

    signal.signal(signal.SIGUSR1, arm)
    qcdapp = load_app()

    try:
        if a.run == "readings":
            app = load_app("readings").run(a.config)
        else:
            app = qcdapp.main(a.config)
    except flashemu.PowerCut:
        print("hostapp: power cut during flash operation %d (%s)" % (emu.ops, emu.torn), flush=True)
        os._exit(137)
    return 0 if app.state in ("stopped",) or app.state.startswith("stopped") else 1


if __name__ == "__main__":
    sys.exit(main())

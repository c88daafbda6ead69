# The `machine` module of the qcd virtual board (vboard): what the qcd
# firmware and mpremote use of ports/esp32/modmachine.c. Resets go through
# qcdhost/emu/wasm/vboard.mjs, which restarts the interpreter (soft: same process
# state of the flash and files; hard: also the reset cause and watchdog).
import _vboard
from binascii import unhexlify

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5


def reset():
    _vboard.reset(HARD_RESET)
    raise SystemExit  # never returns on a board; the board restarts after this


def soft_reset():
    _vboard.reset(SOFT_RESET)
    raise SystemExit


def reset_cause():
    return _vboard.reset_cause()


def unique_id():
    return unhexlify(_vboard.unique_id())


def freq(*args):
    return 160000000


def idle():
    pass


class WDT:
    """The task watchdog: once started it cannot be stopped, and it survives
    a soft reset (as on the esp32 port); if not fed within `timeout` ms the
    virtual board resets with reset_cause() == WDT_RESET."""

    def __init__(self, id=0, timeout=5000):
        _vboard.wdt_start(timeout)

    def feed(self):
        _vboard.wdt_feed()


class RTC:
    """The real-time clock, as mpremote's `rtc` command uses it: datetime()
    reads (year, month, day, weekday, hours, minutes, seconds, subseconds),
    datetime(tuple) sets. The board's clock is the host's plus an offset."""

    def datetime(self, dt=None):
        if dt is None:
            return tuple(int(x) for x in _vboard.rtc_get().split(","))
        _vboard.rtc_set(",".join(str(int(x)) for x in dt))

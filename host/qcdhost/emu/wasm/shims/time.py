# The `time` module of the qcd virtual board (vboard): the port's
# built-in (reachable as `utime`) with sleep, sleep_ms and sleep_us that,
# while they wait, serve the board's terminal and watchdog, as the esp32
# port's mp_hal_delay_ms does: a Ctrl-C raises KeyboardInterrupt in the
# sleeping program (so mpremote and qcdboard diag reach the REPL of a board
# whose main.py waits between setup retries), and an unfed watchdog resets
# the board. Without this the WebAssembly port's sleep blocks the board's
# only thread until it ends.
from utime import *  # noqa: F401,F403

import _vboard
import utime as _builtin

_SHORT_MS = 20  # shorter waits: the built-in sleep, no terminal check


def _wait(ms):
    r = _vboard.sleep(int(ms))
    if r == "!intr":
        raise KeyboardInterrupt
    if r:
        raise SystemExit  # "!reset": the board resets at the top level


def sleep_ms(ms):
    if ms < _SHORT_MS:
        _builtin.sleep_ms(ms)
    else:
        _wait(ms)


def sleep(s):
    sleep_ms(int(s * 1000))


def sleep_us(us):
    if us < _SHORT_MS * 1000:
        _builtin.sleep_us(us)
    else:
        _wait(us // 1000)

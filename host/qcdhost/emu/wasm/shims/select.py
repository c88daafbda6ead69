# The `select` module of the qcd virtual board with --net (vboard):
# MicroPython's select.poll (extmod/modselect.c) over the board's UDP
# sockets (socket.py beside this file, served by net.mjs) and, for every
# other object, the port's built-in select (imported as `uselect`), so
# polling sys.stdin or an io.IOBase stream keeps working.
#
#   poll()                    register(obj, mask=POLLIN|POLLOUT), unregister,
#                             modify (OSError(ENOENT) if not registered),
#                             poll(timeout_ms=-1) -> [(obj, event), ...],
#                             ipoll(timeout_ms=-1, flags=0) (flags=1: one-shot,
#                             the mask drops to 0 after an event)
#   select(r, w, x, timeout_s=None)
# POLLERR and POLLHUP are reported whether asked for or not; a closed socket
# reports 0x20 (MP_STREAM_POLL_NVAL), as on the esp32 port.
#
# Waiting: a poll over board sockets only waits in the network thread (the
# board still answers Ctrl-C from its terminal, which raises
# KeyboardInterrupt here, and keeps its watchdog). With other objects too it
# alternates a built-in poll(0) with 20 ms waits on the sockets.
#
# The board's top-level yield (vboard.mjs): this port collects garbage only
# when Python has returned to JS, so while the qcd firmware app
# (qcdapp.APP.state == "running") waits here, the board may answer "yield":
# SystemExit is raised, the app unwinds to the top level, the board collects
# and calls qcdapp.resume(), which continues with the same engine (and, via
# net.mjs, the same sockets). Not inside an asyncio task (qcdapp.serve, the
# IKE loop as a task): there SystemExit would end the task for good, and no
# yield is needed, as this port's asyncio returns to JS (where it collects)
# whenever its tasks wait. A poll there after more than --yield-kb KiB of
# allocation (one X25519 computation allocates about 1.2 MB here) killed the
# app.
import gc
import sys
import time

import _vboard
import _vboardnet
import socket as _socket
import uselect as _builtin

POLLIN = 0x01
POLLOUT = 0x04
POLLERR = 0x08
POLLHUP = 0x10
_POLLNVAL = 0x20
_SLICE_MS = 20


def _in_asyncio_task():
    core = getattr(sys.modules.get("asyncio"), "core", None)
    return core is not None and getattr(core, "cur_task", None) is not getattr(core, "_top_level_task", None)


def _app_heap():
    m = sys.modules.get("qcdapp")
    app = getattr(m, "APP", None) if m is not None else None
    if app is None or getattr(app, "state", None) != "running" or _in_asyncio_task():
        return -1
    return gc.mem_alloc()


def _board_poll(spec, timeout):
    r = _vboardnet.poll(spec, timeout, _app_heap())
    if r and r[0] == "!":
        if r == "!intr":
            raise KeyboardInterrupt
        raise SystemExit  # "!yield", "!reset": the board takes over at the top level
    return r


def _wait_one(sid, timeout):
    """True when board socket `sid` has a datagram within timeout ms (-1:
    forever)."""
    return bool(_board_poll("%d:%d" % (sid, POLLIN), timeout))


def _is_board_socket(obj):
    return isinstance(obj, _socket.socket)


class poll:
    def __init__(self):
        self._masks = {}  # obj -> event mask

    def register(self, obj, eventmask=POLLIN | POLLOUT):
        self._masks[obj] = eventmask

    def unregister(self, obj):
        self._masks.pop(obj, None)

    def modify(self, obj, eventmask):
        if obj not in self._masks:
            import errno

            raise OSError(errno.ENOENT)
        self._masks[obj] = eventmask

    def _scan(self, timeout):
        socks = {}
        spec = []
        others = None
        ready = []
        for obj, mask in self._masks.items():
            if _is_board_socket(obj):
                if obj._id < 0:
                    ready.append((obj, _POLLNVAL))
                else:
                    socks[obj._id] = obj
                    spec.append("%d:%d" % (obj._id, mask))
            else:
                if others is None:
                    others = _builtin.poll()
                others.register(obj, mask)
        spec = ",".join(spec)
        if ready:
            timeout = 0
        if timeout is None or timeout < 0:
            timeout = -1
        deadline = None if timeout < 0 else time.ticks_add(time.ticks_ms(), timeout)
        while True:
            found = list(ready)
            wait = timeout
            if others is not None:
                found += others.poll(0)
                wait = 0 if found else (_SLICE_MS if deadline is None else max(0, min(_SLICE_MS, time.ticks_diff(deadline, time.ticks_ms()))))
            r = _board_poll(spec, 0 if found else wait)
            if _vboard.cut_requested():
                import esp32

                esp32._arm_cut()
            if r:
                for item in r.split(","):
                    sid, ev = item.split(":")
                    found.append((socks[int(sid)], int(ev)))
            if found or others is None:
                return found
            if deadline is not None and time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                return found

    def poll(self, timeout=-1):
        return self._scan(timeout)

    def ipoll(self, timeout=-1, flags=0):
        found = self._scan(timeout)
        if flags & 1:
            for obj, _ in found:
                if obj in self._masks:
                    self._masks[obj] = 0
        return iter(found)


def select(rlist, wlist, xlist, timeout=None):
    p = poll()
    for obj in rlist:
        p.register(obj, POLLIN)
    for obj in wlist:
        p.register(obj, p._masks.get(obj, 0) | POLLOUT)
    for obj in xlist:
        p.register(obj, p._masks.get(obj, 0))
    ms = -1 if timeout is None else int(timeout * 1000)
    r, w, x = [], [], []
    for obj, ev in p.poll(ms):
        if ev & POLLIN and obj in rlist:
            r.append(obj)
        if ev & POLLOUT and obj in wlist:
            w.append(obj)
        if ev & (POLLERR | POLLHUP | _POLLNVAL) and obj in xlist:
            x.append(obj)
    return r, w, x

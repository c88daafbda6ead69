# The MicroPython I/O shell around ike.engine: two UDP sockets (IKE port and
# NAT-T port), select.poll, and a millisecond clock built from ticks that
# wrap. One entry point for firmware:
#
#   from ike import config, device
#   cfg = config.load("/ike.json")
#   device.run(cfg, hook)                 # serves until stop() is True
#
# run(cfg, hook=None, log=None, stop=None, rng=None, max_ms=None,
#     engine=None) -> Engine
#   cfg     ike.config.Config (or a dict, which is checked into one)
#   hook    the notify hook (e.g. qcd.hook.QcdHook), or None
#   log     callable(line) for one-line log messages (default: print with
#           the uptime in ms)
#   stop    callable() -> True to return (checked at least twice a second)
#   rng     callable(n) -> n random bytes (default os.urandom)
#   max_ms  return after this many ms of this run (tests)
#   engine  an Engine to continue with: one from new_engine(), or one an
#           earlier run() served before it returned or was interrupted
#           (KeyboardInterrupt: mpremote's Ctrl-C). Its IKE SAs, timers and
#           clock go on; the sockets are bound again on the same ports (they
#           were closed when the loop ended); a datagram the engine had
#           produced but not yet sent goes out first. cfg, hook and rng are
#           the engine's then.
#
# new_engine(cfg, hook=None, log=None, rng=None) -> Engine
#   the Engine run() would make, with its clock, for a caller that keeps it
#   across interruptions (firmware/qcdapp.py: APP.engine, so `qcdboard
#   diag`, which interrupts the loop, costs no IKE SA). An interrupt lands
#   between two bytecodes; if it hits the engine in the middle of a
#   datagram, that exchange may be left half-done and is recovered as a lost
#   datagram would be (retransmission, or the peer's).
#
# Device traps this handles (micropython-esp32-reference.md §6, §9):
# sendto takes a dotted IPv4 string, never a hostname (the config holds
# addresses, checked by ike.config); ticks_ms wraps every 2^30 ms, so the
# engine's `now` is accumulated with ticks_diff; poll timeouts are in ms and
# sockets are non-blocking, so the 100 ms socket-timeout quantum never
# matters; recvfrom may give a raw sockaddr on some ports (decoded here).
# Ports must be configured (0 would need getsockname, which the esp32 port
# lacks).
#
# Idle time: when nothing is due for IDLE_MIN_MS and no datagram came in or
# went out for QUIET_MS (an exchange under way wants its answers seen at
# once), the loop does one slice of the next X25519 key pair (ike.crypto.prepare, if the config has group 31),
# then looks at its sockets again, so the next IKE_SA_INIT or rekey takes a
# ready one instead of making it then. A datagram that comes in during a
# slice waits for it (on the C3 stand-in a slice is about 2 M instructions,
# 12 ms at 160 MHz: bench c3). The first IKE_SA_INIT after boot, sent before
# the loop was ever idle, makes its key pair then.
#
# Out of memory (issue 10 §7): a MemoryError never ends the loop. recvfrom
# allocates its RECV_MAX buffer before it reads, so when that fails the
# datagram is still queued: it is read with a one-octet buffer instead (UDP
# drops the rest) and so dropped, counted in the engine's
# counters["out_of_memory"] and logged; the engine does the same for a
# MemoryError of its own (receive(), tick(): ike.engine's header). A failed
# send is a lost datagram, which retransmission covers. So that a small heap
# has RECV_MAX octets in one piece for recvfrom at all, the loop keeps such
# a piece taken between datagrams (keep_room, below).

import gc
import select
import socket

from ike import crypto
from ike.config import Config
from ike.engine import Engine

try:
    from time import ticks_diff, ticks_ms
except ImportError:  # CPython, for host tests of this shell
    import time as _time

    def ticks_ms():
        return int(_time.monotonic() * 1000) & 0x3FFFFFFF

    def ticks_diff(a, b):
        d = (a - b) & 0x3FFFFFFF
        return d - 0x40000000 if d & 0x20000000 else d


RECV_MAX = 2048  # our IKE messages stay far below; ESP-in-UDP likewise
POLL_MAX_MS = 500
IDLE_MIN_MS = 20  # idle work (the next X25519 key pair) only if nothing is due sooner
QUIET_MS = 200  # and only this long after the last datagram in or out


# Room for recvfrom (issue 10 §3). recvfrom(RECV_MAX) allocates RECV_MAX
# contiguous octets before it reads, and MicroPython's heap is never
# compacted: with the SA's state, keys and messages scattered over it, a
# small heap has kilobytes free but no 2 KiB in one piece (seen on the unix
# port in a 48 KiB heap: 13 KB free, the largest hole 1.2 KB, every datagram
# dropped). So the loops keep that piece taken, by a bytearray made when the
# heap still had one, and let go of it just before recvfrom: recvfrom's
# allocation finds no other room, collects, and gets the piece. Right after
# it the piece is taken again (received()), before handling the datagram
# fills it with small objects. The unix port has freed recvfrom's buffer by
# then (the datagram was copied out); the esp32 port shrinks it in place
# into the datagram, so that the datagram is copied out of the piece first.
# When the heap has no such piece at all, nothing is kept and recvfrom is on
# its own, as before.
def keep_room():
    try:
        return bytearray(RECV_MAX)
    except MemoryError:
        return None


def received(data):
    """(data, room) right after recvfrom: the datagram, moved out of the
    piece recvfrom used if it sits there, and that piece taken again (or
    None)."""
    room = keep_room()
    if room is None:
        data = bytes(memoryview(data))  # a copy elsewhere: the piece is garbage now
        room = keep_room()
    return data, room


class Clock:
    """Milliseconds since start that never wrap: ticks_diff accumulated."""

    def __init__(self):
        self._last = ticks_ms()
        self.ms = 0

    def now(self):
        t = ticks_ms()
        self.ms += ticks_diff(t, self._last)
        self._last = t
        return self.ms


def _addr(a):
    """(ip, port) from what recvfrom returned: a tuple on the esp32 port and
    CPython, a raw sockaddr_in on ports that do not format it."""
    if isinstance(a, tuple):
        return (a[0], a[1])
    b = bytes(a)
    return ("%d.%d.%d.%d" % (b[4], b[5], b[6], b[7]), (b[2] << 8) | b[3])


def _udp(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    except (OSError, AttributeError):
        pass
    s.bind(socket.getaddrinfo(addr, port)[0][-1])
    s.setblocking(False)
    return s


def _drop(s, eng, log):
    """recvfrom could not allocate: drop the datagram it left queued (read
    into one octet), count and log it."""
    eng.counters["out_of_memory"] += 1
    try:
        s.recv(1)
    except (OSError, MemoryError):
        pass
    gc.collect()
    try:
        log("ike: out of memory in recvfrom: datagram dropped")
    except MemoryError:
        pass


def _port(s, configured):
    try:
        return s.getsockname()[1]
    except (AttributeError, OSError):
        return configured


def new_engine(cfg, hook=None, log=None, rng=None):
    """A new Engine for run(engine=...), carrying the clock run() drives it
    with (ms from ticks, never wrapping), so that a later run() continues on
    the same time line."""
    if not isinstance(cfg, Config):
        cfg = Config(cfg)
    clock = Clock()
    if log is None:

        def log(line):
            print("[%9d ms] %s" % (clock.now(), line))

    eng = Engine(cfg, hook, rng, log)
    eng.device_clock = clock
    eng.device_started = False
    return eng


def run(cfg, hook=None, log=None, stop=None, rng=None, max_ms=None, engine=None):
    if engine is None:
        eng = new_engine(cfg, hook, log, rng)
    else:
        eng = engine
        if getattr(eng, "device_clock", None) is None:
            raise ValueError("engine= takes an Engine from device.new_engine() or an earlier run()")
    if log is None:
        log = eng.log
    clock = eng.device_clock
    cfg = eng.cfg
    ike = _udp(cfg.local_addr, cfg.local_port)
    try:
        natt = _udp(cfg.local_addr, cfg.local_natt_port)
    except BaseException:
        ike.close()
        raise
    eng.bind(cfg.local_addr, _port(ike, cfg.local_port), _port(natt, cfg.local_natt_port))
    if eng.device_started:
        log("ike: continuing on %s port %d, NAT-T port %d with %d IKE SA(s)" % (cfg.local_addr, eng.local_port, eng.local_natt_port, len(eng.sas)))
    else:
        log("ike: listening on %s port %d, NAT-T port %d" % (cfg.local_addr, eng.local_port, eng.local_natt_port))
    poll = select.poll()
    poll.register(ike, select.POLLIN)
    poll.register(natt, select.POLLIN)
    by_fd = {}
    for s, is_natt in ((ike, False), (natt, True)):
        try:
            by_fd[s.fileno()] = (s, is_natt)
        except AttributeError:
            pass

    # What this port's sendto takes for each destination, from getaddrinfo:
    # ("a.b.c.d", port) on esp32, a raw sockaddr on the unix port (where the
    # heap bench runs the app). Looked up once per peer, not per datagram.
    dests = {}

    quiet = [0]  # clock ms from which the loop may do idle work

    def flush():
        out = eng.take_datagrams()
        if out:
            quiet[0] = clock.now() + QUIET_MS
        for data, dst, is_natt in out:
            try:
                to = dests.get(dst)
                if to is None:
                    if len(dests) >= 8:
                        dests.clear()
                    to = dests[dst] = socket.getaddrinfo(dst[0], dst[1])[0][-1]
                (natt if is_natt else ike).sendto(data, to)
            except OSError as e:
                log("ike: send to %s:%d failed (%s)" % (dst[0], dst[1], e))
            except MemoryError:
                eng.counters["out_of_memory"] += 1
                try:
                    log("ike: out of memory in sendto: datagram lost")
                except MemoryError:
                    pass
        eng.take_events()  # the log lines already say what happened

    if not eng.device_started:
        eng.start(clock.now())
        eng.device_started = True
    t0 = clock.now()
    room = keep_room()
    try:
        flush()  # what an interrupted run left unsent
        while True:
            try:
                now = clock.now()
                if stop is not None and stop():
                    break
                if max_ms is not None and now - t0 >= max_ms:
                    break
                due = eng.next_due()
                wait = POLL_MAX_MS if due is None else max(0, min(POLL_MAX_MS, due - now))
                if wait >= IDLE_MIN_MS and now >= quiet[0] and crypto.prepare(eng.rng, cfg.dh_groups):
                    wait = 0  # a slice done: look at the sockets and timers, then on
                for ev in poll.poll(wait):
                    obj = ev[0]
                    if isinstance(obj, int):  # CPython's poll gives file numbers
                        s, is_natt = by_fd[obj]
                    else:
                        s, is_natt = obj, obj is natt
                    room = None  # recvfrom's buffer goes there (keep_room)
                    try:
                        data, src = s.recvfrom(RECV_MAX)
                    except OSError:
                        continue
                    except MemoryError:
                        _drop(s, eng, log)
                        continue
                    data, room = received(data)
                    quiet[0] = clock.now() + QUIET_MS
                    eng.receive(data, _addr(src), is_natt, clock.now())
                    flush()
                if room is None:
                    room = keep_room()
                eng.tick(clock.now())
                flush()
            except MemoryError:
                # anywhere else in one turn of the loop (poll's list, the
                # clock, the log): that turn is lost, the loop goes on
                gc.collect()
                eng._oom("device loop", clock.ms, "one turn skipped")
    finally:
        ike.close()
        natt.close()
    return eng

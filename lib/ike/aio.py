# The device loop as an asyncio task (MicroPython's asyncio, which stock
# ESP32 firmware has, and CPython's), so the IKE engine and its tunnel run
# beside whatever else the board does (sensors, MQTT, a web page):
#
#   import asyncio
#   from ike import aio, device
#   from ike.tunnel import Tunnel
#
#   eng = device.new_engine(cfg, hook)
#   tun = Tunnel(eng)
#   asyncio.create_task(aio.serve(eng))       # the IKE loop
#   s = tun.socket(5000)
#   s.sendto(b"21.5", ("10.1.0.10", 7))        # goes out at once
#   data, addr = await aio.recvfrom(s, 5000)   # or None after 5 s
#
# serve(engine, stop=None, max_ms=None, feed=None, poll_ms=POLL_MS) -> Engine
#   engine  from device.new_engine() (the clock it carries is the one the
#           blocking device.run() uses too: one can follow the other)
#   stop    callable() -> True ends the loop (checked at every wake-up)
#   max_ms  end after this many ms (tests)
#   feed    callable() called at every wake-up (a watchdog's feed)
# The sockets are opened here and closed when the task ends or is
# cancelled; the engine's SAs, timers and clock stay in the Engine.
#
# Waiting. CPython: the loop's add_reader on both sockets wakes the task
# when a datagram is there, and sleeps until the engine's next timer.
# MicroPython's asyncio has no public way to wait for a UDP socket (its
# IOQueue is internal and the WebAssembly port has none), so there the task
# looks at its sockets with poll(0) and sleeps min(next timer, poll_ms)
# between looks: an idle loop wakes 50 times a second for a poll(0), and a
# datagram waits at most poll_ms (20 ms) before the engine sees it; for
# ACTIVE_MS (200 ms) after a datagram came in or went out it looks every
# millisecond instead, so an answer to what the app just sent is seen at once.
# A datagram the app sends through the tunnel leaves at once (the tunnel
# calls flush() itself), not at the next wake-up.
#
# What blocks: the task runs the engine between awaits, so one datagram's
# work (a MODP-2048 exponentiation in IKE_SA_INIT is the longest) blocks the
# other tasks for its duration: `make bench ONLY=tunnel` measures the
# longest gap another task sees during a handshake.
#
# Idle time: when nothing is due for device.IDLE_MIN_MS and the last
# datagram is ACTIVE_MS old, the task does one
# slice of the next X25519 key pair (ike.crypto.prepare, as ike.device's loop
# does) and yields to the other tasks before the next one, so a handshake
# or rekey takes a ready pair; the other tasks wait at most one slice.
#
# recvfrom(sock, timeout_ms=None) -> (payload, (ip, port)) or None: the next
# datagram on a tunnel socket (ike.tunnel.UdpSocket), waiting without
# polling (an asyncio.Event the tunnel sets).

import asyncio
import gc
import select

from ike import crypto, device

POLL_MS = 20  # MicroPython: longest wait before a datagram is seen
ACTIVE_MS = 200  # MicroPython: after traffic, look every millisecond this long
DRAIN_MAX = 16  # datagrams read per socket per wake-up (others' turn after)

try:
    _sleep_ms = asyncio.sleep_ms  # MicroPython
    _CPYTHON = False
except AttributeError:  # CPython

    def _sleep_ms(ms):
        return asyncio.sleep(ms / 1000)

    _CPYTHON = True


async def _wait_event(ev, ms):
    """Wait until ev is set or ms pass (ms None: no limit)."""
    if ms is None:
        await ev.wait()
        return
    if _CPYTHON:
        # asyncio.timeout, not wait_for: CPython 3.11's wait_for drops a
        # cancel() that arrives as the event is set (the task then never
        # ends; fixed in 3.12, whose wait_for is built on timeout()).
        try:
            async with asyncio.timeout(ms / 1000):
                await ev.wait()
        except TimeoutError:
            pass
        return
    try:
        await asyncio.wait_for_ms(ev.wait(), ms)
    except asyncio.TimeoutError:
        pass


async def recvfrom(sock, timeout_ms=None):
    """The next datagram on a tunnel socket, or None after timeout_ms."""
    got = sock.recvfrom()
    if got is not None or timeout_ms == 0:
        return got
    if sock.event is None:
        sock.event = asyncio.Event()
    sock.event.clear()
    await _wait_event(sock.event, timeout_ms)
    return sock.recvfrom()


async def serve(engine, stop=None, max_ms=None, feed=None, poll_ms=POLL_MS):
    eng = engine
    clock = getattr(eng, "device_clock", None)
    if clock is None:
        raise ValueError("serve() takes an Engine from device.new_engine()")
    cfg = eng.cfg
    log = eng.log
    ike = device._udp(cfg.local_addr, cfg.local_port)
    try:
        natt = device._udp(cfg.local_addr, cfg.local_natt_port)
    except BaseException:
        ike.close()
        raise
    eng.bind(cfg.local_addr, device._port(ike, cfg.local_port), device._port(natt, cfg.local_natt_port))
    log("ike: asyncio loop on %s port %d, NAT-T port %d" % (cfg.local_addr, eng.local_port, eng.local_natt_port))
    socks = ((ike, False), (natt, True))
    poll = None
    wake = None
    loop = None
    if _CPYTHON:
        wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        for s, _ in socks:
            loop.add_reader(s.fileno(), wake.set)
    else:
        poll = select.poll()
        poll.register(ike, select.POLLIN)
        poll.register(natt, select.POLLIN)

    active = [0]  # until when (clock ms) traffic makes us look every ms

    def flush():
        out = eng.take_datagrams()
        if out:
            active[0] = clock.now() + ACTIVE_MS
        for data, dst, is_natt in out:
            try:
                (natt if is_natt else ike).sendto(data, dst)
            except OSError as e:
                log("ike: send to %s:%d failed (%s)" % (dst[0], dst[1], e))
            except MemoryError:  # a lost datagram (ike.device's header)
                eng.counters["out_of_memory"] += 1
        eng.take_events()  # the log lines already say what happened

    def drain(s, is_natt):
        for _ in range(DRAIN_MAX):
            try:
                data, src = s.recvfrom(device.RECV_MAX)
            except OSError:  # EAGAIN: nothing (more) there
                return
            except MemoryError:  # dropped, counted, logged: ike.device's rule
                device._drop(s, eng, log)
                return
            active[0] = clock.now() + ACTIVE_MS
            eng.receive(data, device._addr(src), is_natt, clock.now())
            flush()

    tun = eng.tunnel
    if tun is not None:
        tun.wake = flush
    if not eng.device_started:
        eng.start(clock.now())
        eng.device_started = True
    t0 = clock.now()
    try:
        flush()
        while True:
            if feed is not None:
                feed()
            now = clock.now()
            if stop is not None and stop():
                break
            if max_ms is not None and now - t0 >= max_ms:
                break
            try:
                if _CPYTHON:
                    wake.clear()
                    for s, is_natt in socks:
                        drain(s, is_natt)
                else:
                    for ev in poll.poll(0):
                        obj = ev[0]
                        for s, is_natt in socks:
                            if obj is s or obj == _fileno(s):
                                drain(s, is_natt)
                eng.tick(clock.now())
                flush()
            except MemoryError:  # this turn is lost, the loop goes on
                gc.collect()
                eng._oom("asyncio loop", clock.ms, "one turn skipped")
            now = clock.now()
            due = eng.next_due()
            wait = device.POLL_MAX_MS if due is None else max(0, min(device.POLL_MAX_MS, due - now))
            if wait >= device.IDLE_MIN_MS and now >= active[0]:
                if crypto.prepare(eng.rng, cfg.dh_groups):
                    wait = 0  # a slice of the next key pair done: others' turn, then on
            if max_ms is not None:
                wait = max(0, min(wait, t0 + max_ms - now))
            if _CPYTHON:
                await _wait_event(wake, wait)
            else:
                await _sleep_ms(min(wait, 1 if now < active[0] else poll_ms))
    finally:
        if tun is not None:
            tun.wake = None
        if loop is not None:
            for s, _ in socks:
                loop.remove_reader(s.fileno())
        ike.close()
        natt.close()
    return eng


def _fileno(s):
    try:
        return s.fileno()
    except AttributeError:
        return None

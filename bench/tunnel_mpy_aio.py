# Runs ON the virtual board (MicroPython, WebAssembly port, vboard
# --net --headless) as its main.py, from bench/tunnel_vboard_bench.py: the
# device loop (ike.aio.serve) as an asyncio task with the board's UDP
# sockets, a ticker task that sleeps 1 ms and records how late it wakes,
# and an app task sending readings to the gateway's echo service. Reads
# /dev.json; prints `RESULT name value` lines.
import asyncio
import json
import time

from ike import aio, device
from ike.tunnel import Tunnel

READINGS = 50

with open("/dev.json") as f:
    cfg = json.load(f)
eng = device.new_engine(cfg, log=lambda line: None)
tun = Tunnel(eng)
gaps = {"handshake": 0, "readings": 0}
phase = ["handshake"]
done = []


def result(name, value):
    print("RESULT %s %s" % (name, value))


async def ticker():
    last = time.ticks_ms()
    while not done:
        await asyncio.sleep_ms(1)
        t = time.ticks_ms()
        late = time.ticks_diff(t, last) - 1
        if late > gaps[phase[0]]:
            gaps[phase[0]] = late
        last = t


async def app():
    t0 = time.ticks_ms()
    while tun.address() is None:
        await asyncio.sleep_ms(1)
    result("handshake_ms", time.ticks_diff(time.ticks_ms(), t0))
    phase[0] = "readings"
    s = tun.socket(5000)
    got = 0
    t0 = time.ticks_ms()
    for i in range(READINGS):
        s.sendto(b"reading %d" % i, ("10.1.0.1", 7))
        if await aio.recvfrom(s, 2000) is not None:
            got += 1
    ms = time.ticks_diff(time.ticks_ms(), t0)
    result("readings_per_s", "%.0f" % (READINGS * 1000 / max(ms, 1)))
    result("readings_answered", "%d of %d" % (got, READINGS))


async def main():
    loop_task = asyncio.create_task(aio.serve(eng, stop=lambda: bool(done)))
    tick = asyncio.create_task(ticker())
    await app()
    done.append(1)
    await loop_task
    await tick
    result("longest_block_ms_handshake", gaps["handshake"])
    result("longest_block_ms_readings", gaps["readings"])
    result("poll_ms", aio.POLL_MS)


if hasattr(asyncio, "run"):
    asyncio.run(main())
else:
    asyncio.create_task(main())  # this port: JS timers run it; the board stays on meanwhile

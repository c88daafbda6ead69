# The longest time ike.aio's device loop keeps another asyncio task waiting,
# on CPython with real UDP sockets: the device loop (ike.aio.serve) and a
# ticker task that sleeps 1 ms and records how late it wakes, against
# qcd-peer as the gateway (UDP echo service on tunnel port 7). Two
# phases: the handshake (start until the tunnel has an address), and 200
# readings sent and echoed. Prints `RESULT name value` lines for
# bench/section_tunnel.py.
#
#   python3 bench/tunnel_aio_bench.py [GROUP]         (qcd installed: make venv)
import asyncio
import sys
import tempfile
import time

from ike import aio, device
from ike.tunnel import Tunnel
from qcdhost.harness import DEV_INNER, GW_INNER, device_config, echo_gateway, free_local

READINGS = 200


def result(name, value):
    print("RESULT %s %s" % (name, value), flush=True)


def main(group):
    gw = echo_gateway(tempfile.mkdtemp(prefix="tunnel-aio-bench-"), pcap=False, dh_groups=[group])
    try:
        dev_cfg = device_config(gw.ports(), local=free_local(), dh_groups=[group], tunnel={"inner_addr": DEV_INNER})
        eng = device.new_engine(dev_cfg, log=lambda line: None)
        tun = Tunnel(eng)
        gaps = {"handshake": 0.0, "readings": 0.0}
        phase = ["handshake"]
        done = []

        async def ticker():
            last = time.perf_counter()
            while not done:
                await asyncio.sleep(0.001)
                t = time.perf_counter()
                late = t - last - 0.001
                if late > gaps[phase[0]]:
                    gaps[phase[0]] = late
                last = t

        async def app():
            t0 = time.perf_counter()
            while tun.address() is None:
                await asyncio.sleep(0.001)
            result("handshake_ms", "%.1f" % ((time.perf_counter() - t0) * 1000))
            phase[0] = "readings"
            s = tun.socket(5000)
            got = 0
            t0 = time.perf_counter()
            for i in range(READINGS):
                s.sendto(b"reading %d" % i, (GW_INNER, 7))
                if await aio.recvfrom(s, 2000) is not None:
                    got += 1
            result("readings_per_s", "%.0f" % (READINGS / (time.perf_counter() - t0)))
            result("readings_answered", got)

        async def run():
            loop_task = asyncio.create_task(aio.serve(eng, stop=lambda: bool(done)))
            tick = asyncio.create_task(ticker())
            await asyncio.sleep(0)
            await asyncio.wait_for(app(), 120)
            done.append(1)
            await loop_task
            await tick

        asyncio.run(run())
        result("longest_block_ms_handshake", "%.2f" % (gaps["handshake"] * 1000))
        result("longest_block_ms_readings", "%.2f" % (gaps["readings"] * 1000))
        result("group", group)
    finally:
        gw.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 14)

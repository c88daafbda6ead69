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
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

from ike import aio, device
from ike.tunnel import Tunnel
from qcdhost.ikeshell import control

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

PSK = "a-long-pre-shared-key"
READINGS = 200


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def result(name, value):
    print("RESULT %s %s" % (name, value), flush=True)


def main(group):
    d = tempfile.mkdtemp(prefix="tunnel-aio-bench-")
    gw_cfg = {
        "role": "responder",
        "local": {"addr": "127.0.0.1", "port": 0, "natt_port": 0},
        "psk": PSK,
        "id_local": "gw.example",
        "id_peer": "dev.example",
        "ts_local": ["10.1.0.0/16"],
        "ts_peer": ["10.2.0.0/24"],
        "dpd_s": 0,
        "dh_groups": [group],
        "tunnel": {"inner_addr": "10.1.0.1"},
    }
    path = os.path.join(d, "gw.json")
    with open(path, "w") as f:
        json.dump(gw_cfg, f)
    ctl = os.path.join(d, "gw.ctl")
    gw = subprocess.Popen([sys.executable, "-m", "qcdhost.peer", "run", path, "--control", ctl, "--echo", "7"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ports = None
        for _ in range(200):
            try:
                ports = control(ctl, "status", timeout=1.0)["ports"]
                break
            except (OSError, ValueError):
                time.sleep(0.05)
        dev_cfg = {
            "role": "initiator",
            "local": {"addr": "127.0.0.1", "port": free_port(), "natt_port": free_port()},
            "peer": {"addr": "127.0.0.1", "port": ports[0], "natt_port": ports[1]},
            "psk": PSK,
            "id_local": "dev.example",
            "id_peer": "gw.example",
            "ts_local": ["10.2.0.0/24"],
            "ts_peer": ["10.1.0.0/16"],
            "nat_t": "force",
            "dpd_s": 0,
            "dh_groups": [group],
            "tunnel": {"inner_addr": "10.2.0.5"},
        }
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
                s.sendto(b"reading %d" % i, ("10.1.0.1", 7))
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
        gw.terminate()
        gw.wait()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 14)

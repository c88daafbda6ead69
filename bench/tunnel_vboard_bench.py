# The longest time ike.aio's device loop keeps another asyncio task waiting,
# on MicroPython: bench/tunnel_mpy_aio.py as main.py of the virtual board
# (vboard --net --headless: the WebAssembly port, its asyncio, UDP on
# the host's stack) against qcd-peer as the gateway (--echo 7).
# Prints the board's `RESULT name value` lines for bench/section_tunnel.py.
#
#   python3 bench/tunnel_vboard_bench.py [GROUP]
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

from qcdhost.esp import remote
from qcdhost.ikeshell import control

PSK = "a-long-pre-shared-key"


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main(group):
    d = tempfile.mkdtemp(prefix="tunnel-vboard-bench-")
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
    with open(os.path.join(d, "gw.json"), "w") as f:
        json.dump(gw_cfg, f)
    ctl = os.path.join(d, "gw.ctl")
    gw = subprocess.Popen([sys.executable, "-m", "qcdhost.peer", "run", os.path.join(d, "gw.json"), "--control", ctl, "--echo", "7"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ports = None
        for _ in range(200):
            try:
                ports = control(ctl, "status", timeout=1.0)["ports"]
                break
            except (OSError, ValueError):
                time.sleep(0.05)
        fs = os.path.join(d, "board", "fs")
        for host, dev in remote.package_files(("ikebase", "ike")):
            dest = os.path.join(fs, *dev.split("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(host, dest)
        shutil.copyfile(os.path.join(HERE, "tunnel_mpy_aio.py"), os.path.join(fs, "main.py"))
        dev = {
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
        with open(os.path.join(fs, "dev.json"), "w") as f:
            json.dump(dev, f)
        p = subprocess.run([sys.executable, "-m", "qcdhost.emu.vboard", "--dir", os.path.join(d, "board"), "--net", "--headless"], capture_output=True, text=True, timeout=600)
        lines = [line for line in p.stdout.splitlines() if line.startswith("RESULT ")]
        if p.returncode or not lines:
            raise SystemExit("the virtual board run failed:\n" + p.stdout[-3000:] + p.stderr[-2000:])
        for line in lines:
            print(line)
        print("RESULT group %d" % group)
    finally:
        gw.terminate()
        gw.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 14)

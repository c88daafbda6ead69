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
import subprocess
import sys
import tempfile

from qcdhost.esp import remote
from qcdhost.harness import DEV_INNER, device_config, echo_gateway, free_local

HERE = os.path.dirname(os.path.abspath(__file__))


def main(group):
    d = tempfile.mkdtemp(prefix="tunnel-vboard-bench-")
    gw = echo_gateway(d, pcap=False, dh_groups=[group])
    try:
        fs = os.path.join(d, "board", "fs")
        for host, dev in remote.package_files(("ikebase", "ike")):
            dest = os.path.join(fs, *dev.split("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(host, dest)
        shutil.copyfile(os.path.join(HERE, "tunnel_mpy_aio.py"), os.path.join(fs, "main.py"))
        dev = device_config(gw.ports(), local=free_local(), dh_groups=[group], tunnel={"inner_addr": DEV_INNER})
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
        gw.stop()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 14)

# ike.device, the MicroPython I/O shell, exercised on CPython (its socket,
# select.poll and ticks code paths have CPython equivalents): as the device
# it brings an IKE SA up with a qcd-peer gateway over loopback. Its clock
# must survive ticks_ms wrapping.
import os
import subprocess
import sys
import textwrap

from peers import Peer, one_up
from support import LIB

from ike import device

PSK = "a-long-pre-shared-key"


def test_clock_is_monotonic_across_a_ticks_wrap(monkeypatch):
    t = [0x3FFFFF00]
    monkeypatch.setattr(device, "ticks_ms", lambda: t[0] & 0x3FFFFFFF)
    c = device.Clock()
    seen = []
    for _ in range(10):
        t[0] += 100
        seen.append(c.now())
    assert seen == [100 * (i + 1) for i in range(10)]


def test_sockaddr_decoding():
    assert device._addr(("192.0.2.1", 500)) == ("192.0.2.1", 500)
    raw = bytes([2, 0, 0x11, 0x94, 192, 0, 2, 7, 0, 0, 0, 0, 0, 0, 0, 0])
    assert device._addr(raw) == ("192.0.2.7", 4500)


def test_device_shell_establishes_an_sa_with_a_gateway(tmp_path):
    gw = Peer(
        str(tmp_path),
        "gw",
        {
            "role": "responder",
            "local": {"addr": "127.0.0.1", "port": 0, "natt_port": 0},
            "psk": PSK,
            "id_local": "gw.example",
            "id_peer": "dev.example",
            "ts_local": ["10.1.0.0/16"],
            "ts_peer": ["10.2.0.0/24"],
            "qcd": {"role": "taker"},
        },
    ).start()
    try:
        port, natt = gw.ports()
        script = textwrap.dedent(
            """
            import sys
            sys.path.insert(0, %r)
            from ike import device
            from qcd import hook
            from qcd.keys import MemoryKeys
            cfg = {"role": "initiator", "local": {"addr": "127.0.0.1", "port": 0, "natt_port": 0},
                   "peer": {"addr": "127.0.0.1", "port": %d, "natt_port": %d}, "psk": %r,
                   "id_local": "dev.example", "id_peer": "gw.example",
                   "ts_local": ["10.2.0.0/24"], "ts_peer": ["10.1.0.0/16"], "nat_t": "force"}
            done = []
            def stop():
                return bool(done)
            def log(line):
                print(line, flush=True)
                if "Child SA" in line and " up under " in line:
                    done.append(1)
            h = hook.QcdHook(hook.MAKER, MemoryKeys([bytes(range(32))]), log=log)
            eng = device.run(cfg, h, log=log, stop=stop, max_ms=60000)
            print("SAS", len(eng.sas), eng.counters["internal_errors"])
            """
            % (LIB, port, natt, PSK)
        )
        p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=dict(os.environ))
        assert p.returncode == 0, p.stderr
        assert "SAS 1 0" in p.stdout, p.stdout
        assert "qcd: token handed over (auth_request)" in p.stdout
        st = gw.wait(one_up, what="SA at the gateway")
        assert st["hook"]["tokens_held"] == 1
        assert st["ike_sas"][0]["natt"]
    finally:
        gw.kill()

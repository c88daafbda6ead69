# ike.device, the MicroPython I/O shell, exercised on CPython (its socket,
# select.poll and ticks code paths have CPython equivalents): as the device
# it brings an IKE SA up with a qcd-peer gateway over loopback. Its clock
# must survive ticks_ms wrapping.
import os
import subprocess
import sys
import textwrap

from peers import PSK, QUICK_RETRANSMIT, Peer, gateway_config, one_up

from ike import device



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
    gw = Peer(str(tmp_path), "gw", gateway_config(dpd_s=30)).start()
    try:
        port, natt = gw.ports()
        script = textwrap.dedent(
            """
            import sys
            from ike import device
            from qcd import hook
            from qcdhost.keys import MemoryKeys
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
            % (port, natt, PSK)
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


def test_run_continues_an_interrupted_engine_with_its_sa_on_the_same_ports(tmp_path):
    # mpremote's Ctrl-C lands in the loop as KeyboardInterrupt: run() closes
    # its sockets and the exception goes up. run(engine=...) then continues
    # with the same Engine (SA, timers, clock) on sockets bound again to the
    # same ports; a request queued while it was stopped goes out first.
    gw = Peer(str(tmp_path), "gw", gateway_config(dpd_s=30, retransmit=QUICK_RETRANSMIT, qcd={"role": "none"})).start()
    try:
        port, natt = gw.ports()
        script = textwrap.dedent(
            """
            import socket, sys
            from ike import device
            def free():
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(("127.0.0.1", 0))
                p = s.getsockname()[1]
                s.close()
                return p
            cfg = {"role": "initiator", "local": {"addr": "127.0.0.1", "port": free(), "natt_port": free()},
                   "peer": {"addr": "127.0.0.1", "port": %d, "natt_port": %d}, "psk": %r,
                   "id_local": "dev.example", "id_peer": "gw.example",
                   "ts_local": ["10.2.0.0/24"], "ts_peer": ["10.1.0.0/16"], "nat_t": "force"}
            lines = []
            def log(line):
                print(line, flush=True)
                lines.append(line)
            def ctrl_c():
                if any(" up under " in l for l in lines):
                    raise KeyboardInterrupt
                return False
            eng = device.new_engine(cfg, log=log)
            try:
                device.run(cfg, log=log, stop=ctrl_c, engine=eng, max_ms=60000)
                print("NOT INTERRUPTED")
            except KeyboardInterrupt:
                print("INTERRUPTED")
            spis = sorted(eng.sas)
            ms = eng.device_clock.now()
            eng.liveness(ms)  # queued while the loop is stopped
            n = len(lines)
            def answered():
                return any("liveness check of" in l for l in lines[n:])
            again = device.run({"unused": True}, log=log, stop=answered, engine=eng, max_ms=60000)
            print("SAME", again is eng, sorted(eng.sas) == spis, len(spis), eng.device_clock.now() >= ms, eng.counters["internal_errors"])
            """
            % (port, natt, PSK)
        )
        p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "INTERRUPTED" in p.stdout and "NOT INTERRUPTED" not in p.stdout, p.stdout
        assert "SAME True True 1 True 0" in p.stdout, p.stdout
        assert "ike: continuing on 127.0.0.1 port" in p.stdout and "with 1 IKE SA(s)" in p.stdout
        assert p.stdout.count("IKE_SA_INIT request") == 1  # no new SA
        st = gw.status()
        assert len(st["ike_sas"]) == 1
    finally:
        gw.kill()


def test_run_refuses_an_engine_it_did_not_make():
    from ike.config import Config
    from ike.engine import Engine

    cfg = Config({"role": "responder", "local": {"addr": "127.0.0.1", "port": 0, "natt_port": 0}, "psk": PSK, "id_local": "a", "id_peer": "b", "ts_local": ["10.1.0.0/16"], "ts_peer": ["10.2.0.0/24"]})
    try:
        device.run(cfg, engine=Engine(cfg))
    except ValueError as e:
        assert "new_engine" in str(e)
    else:
        raise AssertionError("run() took an engine without a device clock")

# ike.aio on CPython's asyncio with real UDP sockets: the device loop as a
# task beside an app task that sends readings through the tunnel, against
# qcd-peer as the gateway with its UDP echo service (--echo). The
# same module runs on MicroPython (the firmware example app, firmware/
# readings.py; the virtual board's check in test_readings_app).
import asyncio
import time

from peers import DEV_INNER, GW_INNER, QUICK_RETRANSMIT, device_config, echo_gateway, free_local

from ike import aio, device
from ike.tunnel import Tunnel, TunnelError

GW_IP = GW_INNER


def dev_cfg(gw_ports, **kw):
    # ike.aio binds the configured ports itself: real free ones
    d = {"local": free_local(), "retransmit": QUICK_RETRANSMIT, "tunnel": {"inner_addr": DEV_INNER}}
    d.update(kw)
    return device_config(gw_ports, **d)


def gateway(tmp_path, **kw):
    return echo_gateway(str(tmp_path), **kw)


async def tunnel_up(tun, seconds=30):
    """Wait for the tunnel's inner address; fail (not hang) when the IKE SA
    does not come up, e.g. on a machine too loaded for the handshake."""
    end = time.monotonic() + seconds
    while tun.address() is None:
        if time.monotonic() > end:
            raise AssertionError("no tunnel after %d s: engine counters %r" % (seconds, dict(tun.engine.counters)))
        await asyncio.sleep(0.01)


async def readings(tun, n, got, gaps):
    """The app: wait for the tunnel, send n readings, collect the echoes;
    beside it a ticker records the longest time the loop did not let it run."""
    s = tun.socket(5000)
    await tunnel_up(tun)
    for i in range(n):
        s.sendto(b"reading %d" % i, (GW_IP, 7))
        r = await aio.recvfrom(s, 5000)
        got.append(r)
    s.close()


async def ticker(gaps, done):
    last = time.monotonic()
    while not done:
        await asyncio.sleep(0.001)
        t = time.monotonic()
        gaps.append(t - last)
        last = t


def test_device_loop_as_a_task_carries_readings_to_the_gateways_echo_and_back(tmp_path):
    gw = gateway(tmp_path)
    try:
        eng = device.new_engine(dev_cfg(gw.ports()), log=lambda line: None)
        tun = Tunnel(eng)
        got, gaps, done = [], [], []

        async def main():
            loop_task = asyncio.create_task(aio.serve(eng, stop=lambda: bool(done)))
            tick = asyncio.create_task(ticker(gaps, done))
            await asyncio.wait_for(readings(tun, 3, got, gaps), 60)
            done.append(1)
            await loop_task
            await tick

        asyncio.run(main())
        assert got == [(b"reading %d" % i, (GW_IP, 7)) for i in range(3)]
        assert gaps  # the other task ran beside the loop (how long it waited: make bench ONLY=tunnel)
        st = gw.ctl("tunnel")
        assert st["counters"]["received"] == 3 and st["counters"]["sent"] == 3
        assert eng.counters["internal_errors"] == 0
        # the gateway pings the device's inner address: answered while the
        # device loop runs again (same engine, new sockets on the same ports)
        done.clear()

        async def pinged():
            t = asyncio.create_task(aio.serve(eng, stop=lambda: bool(done)))
            await asyncio.sleep(0)  # the task has bound its sockets by its first await
            assert gw.ctl("ping 10.2.0.5 42")["ok"]
            for _ in range(500):
                await asyncio.sleep(0.01)
                if tun.counters["echo_answered"]:
                    break
            done.append(1)
            await t

        asyncio.run(pinged())
        assert tun.counters["echo_answered"] == 1
        gw.wait(lambda st: True)
        assert gw.ctl("tunnel")["replies"] == [["10.2.0.5", 0x5143, 42]]
    finally:
        gw.stop()


def test_datagrams_outside_the_selectors_are_refused_on_both_sides(tmp_path):
    gw = gateway(tmp_path)
    try:
        eng = device.new_engine(dev_cfg(gw.ports()), log=lambda line: None)
        tun = Tunnel(eng)
        done = []
        errors = []

        async def main():
            t = asyncio.create_task(aio.serve(eng, stop=lambda: bool(done)))
            await tunnel_up(tun)
            try:
                tun.sendto(b"x", ("10.9.0.1", 7))
            except TunnelError as e:
                errors.append(str(e))
            # the gateway refuses to send to an address outside the device's selector
            errors.append(gw.ctl("send 10.3.0.1:5000 hello")["error"])
            done.append(1)
            await t

        asyncio.run(main())
        assert "outside the traffic selectors" in errors[0]
        assert "outside the traffic selectors" in errors[1]
    finally:
        gw.stop()


def test_cancelling_the_loop_task_closes_its_sockets_and_keeps_the_engine(tmp_path):
    gw = gateway(tmp_path)
    try:
        cfg = dev_cfg(gw.ports())
        eng = device.new_engine(cfg, log=lambda line: None)
        tun = Tunnel(eng)

        async def main():
            t = asyncio.create_task(aio.serve(eng))
            await tunnel_up(tun)
            t.cancel()
            try:  # bounded: a cancel the loop drops fails the test, not the suite
                await asyncio.wait_for(t, 10)
            except asyncio.CancelledError:
                pass

        asyncio.run(main())
        # the ports are free again, the IKE SA is still held
        import socket

        for port in (cfg["local"]["port"], cfg["local"]["natt_port"]):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", port))
            s.close()
        assert tun.wake is None and len(eng.sas) == 1
        # and a new task goes on with it: a datagram through the same SA
        done = []
        got = []

        async def again():
            t = asyncio.create_task(aio.serve(eng, stop=lambda: bool(done)))
            s = tun.socket(5001)
            s.sendto(b"after cancel", (GW_IP, 7))
            got.append(await aio.recvfrom(s, 10000))
            done.append(1)
            await t

        asyncio.run(again())
        assert got == [(b"after cancel", (GW_IP, 7))]
    finally:
        gw.stop()

# An example device app: a reading through the tunnel every N seconds, and
# what comes back printed, beside the IKE loop as an asyncio task.
#
#   import readings; readings.run()            # as main.py would, after boot
#
# The configuration is the app's /qcd.json (firmware/qcd.json.example) with
# a "tunnel" section (docs/config.md: inner_addr, or virtual_ip) and an
# "app" section read here:
#   "app": {"to": "10.1.0.1:7", "every_s": 10, "port": 5000, "count": null}
#     to       host:port behind the gateway the readings go to (an echo
#              service answers with the same payload)
#     every_s  seconds between readings
#     port     our UDP port inside the tunnel
#     count    stop after this many readings (null: never)
# A reading is "reading N T" with the chip's temperature (esp32.mcu_temperature
# where the chip has it) or the uptime in ms. While the tunnel is down the
# reading is not sent and the line says why; it goes on once the tunnel is
# back (after a power cut: as soon as the new IKE SA is up).
import asyncio

import qcdapp


def _reading(n):
    try:
        import esp32

        t = esp32.mcu_temperature()
    except (ImportError, AttributeError, OSError):
        import time

        t = "%dms" % time.ticks_ms()
    return ("reading %d %s" % (n, t)).encode()


def settings(cfg):
    """(to, every_s, port, count) from the "app" section; ValueError says
    what is wrong."""
    a = cfg.get("app") or {}
    if not isinstance(a, dict):
        raise ValueError("app must be an object")
    to = a.get("to", "10.1.0.1:7")
    host, _, port = to.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError("app.to must be host:port")
    return (host, int(port)), float(a.get("every_s", 10)), int(a.get("port", 5000)), a.get("count")


async def readings(app, to, every_s, port, count=None, log=print):
    from ike import aio
    from ike.tunnel import TunnelError

    s = app.tunnel.socket(port)
    n = 0
    try:
        while count is None or n < count:
            n += 1
            msg = _reading(n)
            try:
                s.sendto(msg, to)
                log("app: sent %r to %s:%d from %s" % (msg, to[0], to[1], app.tunnel.address()))
            except (TunnelError, ValueError) as e:
                log("app: reading %d not sent: %s" % (n, e))
                await asyncio.sleep(every_s)
                continue
            got = await aio.recvfrom(s, int(every_s * 1000))
            if got is None:
                log("app: no answer to reading %d" % n)
                continue
            log("app: answer from %s:%d: %r" % (got[1][0], got[1][1], got[0]))
            await asyncio.sleep(every_s)  # the next reading
    finally:
        s.close()


async def main(config_path=qcdapp.CONFIG_PATH):
    app = qcdapp.setup(config_path)
    if app.engine is None:
        return app
    try:
        to, every_s, port, count = settings(app.config)
    except (ValueError, TypeError) as e:
        app.state = "setup failed: app section: %s" % e
        app.log(app.state)
        return app
    loop = asyncio.create_task(qcdapp.serve(app))

    async def readings_then_stop():
        try:
            await readings(app, to, every_s, port, count, app.log)
        finally:
            qcdapp.stop()

    task = asyncio.create_task(readings_then_stop())
    try:
        # until the readings are done (count) or the IKE loop ends: stopped,
        # failed, or a power cut of the flash emulator, which goes on up
        await loop
    finally:
        task.cancel()
    return app


def run(config_path=qcdapp.CONFIG_PATH):
    """asyncio.run(main()); where asyncio has no run() (the WebAssembly
    port, whose asyncio runs tasks from JS timers once Python returns: the
    virtual board stays on while tasks are pending), main() as a task."""
    if hasattr(asyncio, "run"):
        return asyncio.run(main(config_path))
    return asyncio.create_task(main(config_path))

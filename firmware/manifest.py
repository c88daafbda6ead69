# Freeze manifest of the qcd firmware for MicroPython's esp32 port (v1.27.0,
# v1.28.0). The qcd boards (boards/QCD_*) point MICROPY_FROZEN_MANIFEST here;
# `make firmware` builds with it. Paths are relative to this file.

# The port's own manifest first: it freezes ports/esp32/modules (_boot.py,
# which mounts the filesystem, inisetup.py, flashbdev.py, ...), asyncio and
# the networking bundle. Without it the firmware boots with no filesystem.
include("$(PORT_DIR)/boards/manifest.py")

# No micropython-lib package is required: HMAC-SHA-256 is lib/ikebase's
# hmac256 (stock ESP32 firmware freezes no hmac, and the device needs none).

# The product: QCD (lib/qcd), the IKEv2 engine that calls it (lib/ike) and
# the pieces both use (lib/ikebase).
# The device sets, file by file: qcd/names.py, qcd/keys.py and ike/host.py
# (CPython sockets) are host-only (tools/board/remote.py HOST_ONLY; a test
# checks these lists against it).
package(
    "ikebase",
    files=["__init__.py", "hmac256.py"],
    base_path="../lib",
)
package(
    "qcd",
    files=["__init__.py", "diag.py", "hook.py", "maker.py", "ratelimit.py", "store.py", "taker.py", "tokens.py", "wire.py"],
    base_path="../lib",
)
package(
    "ike",
    files=["__init__.py", "aio.py", "config.py", "config_payload.py", "const.py", "create_child_sa.py", "crypto.py", "device.py", "dh.py", "engine.py", "esp.py", "hook.py", "ike_auth.py", "ike_sa_init.py", "informational.py", "keymat.py", "message.py", "payloads.py", "proposals.py", "sa.py", "state.py", "ts.py", "tunnel.py", "x25519.py"],
    base_path="../lib",
)

# The firmware app main.py calls: config, Wi-Fi, the `qcd` partition, the
# store, the IKE engine with the QCD hook, the watchdog.
module("qcdapp.py")
# The example app beside it (a reading through the tunnel every N seconds,
# the IKE loop as an asyncio task): `import readings; readings.run()`.
module("readings.py")

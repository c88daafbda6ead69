# Freeze manifest of the qcd firmware for MicroPython's esp32 port (v1.27.0,
# v1.28.0). The qcd boards (boards/QCD_*) point MICROPY_FROZEN_MANIFEST here;
# `make firmware` builds with it. Paths are relative to this file.

# The port's own manifest first: it freezes ports/esp32/modules (_boot.py,
# which mounts the filesystem, inisetup.py, flashbdev.py, ...), asyncio and
# the networking bundle. Without it the firmware boots with no filesystem.
include("$(PORT_DIR)/boards/manifest.py")

# No micropython-lib package is required: HMAC-SHA-256 is lib/ikebase's
# hmac256 (stock ESP32 firmware freezes no hmac, and the device needs none).

# The product: lib/, whole. lib/ is exactly the device set (host-only code
# lives in host/qcdhost), so each package is frozen whole, as
# micropython-lib's manifests do; one package() per directory of lib/ (a
# test checks this list against lib/, qcdhost.devset).
package("ike", base_path="../lib")
package("ikebase", base_path="../lib")
package("qcd", base_path="../lib")

# The firmware app main.py calls: config, Wi-Fi, the `qcd` partition, the
# store, the IKE engine with the QCD hook, the watchdog; its setup (config,
# Wi-Fi, partition, store, hook) in the module it drops after setup.
module("qcdapp.py")
module("qcdsetup.py")
# The example app beside it (a reading through the tunnel every N seconds,
# the IKE loop as an asyncio task): `import readings; readings.run()`.
module("readings.py")

# The emulators (as littlefs keeps its block devices in bd/):
#   qcdhost.emu.flash    an ESP32 flash partition: NOR and flash-encryption
#                        rules, power cuts, wear (runs on MicroPython too)
#   qcdhost.emu.vboard   the virtual board: the MicroPython WebAssembly port
#                        (wasm/vboard.mjs, its shims in wasm/shims/) on a
#                        pseudo-terminal, with a whole-flash image (`vboard`)
#   qcdhost.emu.hostapp  the firmware app (firmware/main.py) on CPython over
#                        an emulated partition, where no board has a network
#   wasm/                the npm project of the WebAssembly port (package.json,
#                        run.mjs: runs a file on it, as the portable suite does)

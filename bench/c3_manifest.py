# Freeze manifest of the ESP32-C3 instruction-count bench (bench/c3_bench.py):
# MicroPython's qemu port (BOARD=VIRT_RV32) with the device set frozen in,
# as `make firmware` freezes it (firmware/manifest.py), plus micropython-lib's
# hmac, which the device does not use: it is only the side-by-side reference
# for the token cost (issue 10 §5), and bench/engine_pair.py, the engine
# pair the in-memory benchmarks share. Paths are relative to this file.
package("ike", base_path="../lib")
package("ikebase", base_path="../lib")
package("qcd", base_path="../lib")
require("hmac")
module("engine_pair.py")

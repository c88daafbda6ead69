#!/usr/bin/env python3
"""Instruction counts of the device code on a RISC-V MicroPython, for the
ESP32-C3 row of issue 10: one side of an IKE_SA_INIT + IKE_AUTH handshake
(X25519 and MODP-2048), where its instructions go, and one QCD token.

No ESP32-C3 is attached here. What runs instead is MicroPython v1.27's
bare-metal RISC-V port (ports/qemu, BOARD=VIRT_RV32: rv32imac, the C3 is
rv32imc) under qemu-system-riscv32 with `-icount shift=0`, which makes the
guest's instruction counter (`instret`) count the instructions QEMU
executes; bench/c3_device.py checks that against a loop of known length
before it measures anything. The device set is frozen into the firmware
(bench/c3_manifest.py), as `make firmware` freezes it for a board.

  python bench/c3_bench.py build SRC OUT   build the firmware from a MicroPython
                                           source tree SRC (v1.27.0, with its
                                           submodules lib/micropython-lib and
                                           lib/axtls) into OUT (prints the
                                           firmware.elf path; mpy-cross must be
                                           built: make -C SRC/mpy-cross)
  python bench/c3_bench.py run ELF         run bench/c3_device.py on it under QEMU
                                           and print its RESULT lines
  C3_FIRMWARE=ELF make bench ONLY=c3       the same, as a bench section

Needs (Debian): gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf
qemu-system-misc to build and run; mpremote (in .venv) talks to the board's
raw REPL over QEMU's pseudo-terminal. Times at 160 MHz assume one
instruction per cycle, which the C3 does not reach (flash cache misses,
multi-cycle loads, divisions): they are a lower bound of the device's time.

The build follows the esp32 port's choices where they change what the
interpreter executes: -O2 (ESP-IDF's CONFIG_COMPILER_OPTIMIZATION_PERF in
ports/esp32/boards/sdkconfig.base) and MICROPY_OPT_COMPUTED_GOTO=1 (ports/
esp32/mpconfigport.h); cryptolib (AES) and hashlib's sha1 from axTLS, as
this port has no mbedTLS (the ESP32 port's come from mbedTLS, on the C3 with
its AES and SHA accelerators), only their C code, not the TLS module.
"""
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEVICE = os.path.join(HERE, "c3_device.py")
MANIFEST = os.path.join(HERE, "c3_manifest.py")
QEMU = "qemu-system-riscv32"


def make_args(out):
    return [
        "BOARD=VIRT_RV32",
        "BUILD=%s" % out,
        "FROZEN_MANIFEST=%s" % MANIFEST,
        # Debian's GCC 12 has an rv32imac multilib but none for
        # rv32imac_zicsr (the port's default march); ISA spec 2.2 keeps the
        # CSR instructions in the base ISA.
        "RV32_ARCH=rv32imac -misa-spec=2.2",
        "COPT=-O2 -DNDEBUG",
        # axTLS for cryptolib and sha1, without the TLS module it would
        # bring (MICROPY_PY_SSL forced back to 0).
        "MICROPY_PY_SSL=1",
        "MICROPY_SSL_AXTLS=1",
        "AXTLS_DEFS_EXTRA=-Wno-incompatible-pointer-types",
        "CFLAGS_EXTRA=-DMICROPY_OPT_COMPUTED_GOTO=1 -UMICROPY_PY_SSL -DMICROPY_PY_SSL=0 -DMICROPY_PY_CRYPTOLIB=1 -DMICROPY_PY_HASHLIB_SHA1=1",
    ]


def build(src, out):
    port = os.path.join(src, "ports", "qemu")
    if not os.path.isdir(port):
        raise SystemExit("%s: no ports/qemu (a MicroPython v1.27 source tree is needed)" % src)
    cmd = ["make", "-C", port, "-j%d" % min(2, os.cpu_count() or 1)] + make_args(os.path.abspath(out))
    print(" ".join("'%s'" % a if " " in a else a for a in cmd), flush=True)
    subprocess.run(cmd, check=True)
    elf = os.path.join(os.path.abspath(out), "firmware.elf")
    print(elf)
    return elf


def qemu_cmd(elf):
    return [QEMU, "-machine", "virt", "-bios", "none", "-display", "none", "-monitor", "none",
            "-serial", "pty", "-semihosting", "-icount", "shift=0", "-kernel", elf]


def stale(elf):
    """The device-set files newer than the firmware (frozen in at build
    time: a firmware older than lib/ measures old code)."""
    t = os.path.getmtime(elf)
    out = []
    for d, _dirs, files in os.walk(os.path.join(ROOT, "lib")):
        out += [os.path.relpath(os.path.join(d, f), ROOT) for f in files if f.endswith(".py") and os.path.getmtime(os.path.join(d, f)) > t]
    return sorted(out)


def run_script(elf, script, timeout=1800):
    """Boot the firmware under QEMU, run one script on it through mpremote,
    return (stdout, seconds it took); raise if the script failed."""
    if not os.path.isfile(elf):
        raise SystemExit("%s: no such firmware" % elf)
    old = stale(elf)
    if old:
        raise SystemExit("%s is older than %s: rebuild it (python bench/c3_bench.py build SRC OUT)" % (elf, ", ".join(old)))
    q = subprocess.Popen(qemu_cmd(elf), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # QEMU announces the pseudo-terminal it made for the board's UART
        pty = None
        t_end = time.monotonic() + 30
        while pty is None and time.monotonic() < t_end:
            line = q.stdout.readline()
            if not line:
                break
            m = re.search(r"redirected to (/dev/pts/\d+)", line)
            if m:
                pty = m.group(1)
        if pty is None:
            raise RuntimeError("QEMU gave no pseudo-terminal")
        t0 = time.time()
        p = subprocess.run([sys.executable, "-m", "mpremote", "connect", pty, "run", script],
                           capture_output=True, text=True, timeout=timeout)
        wall = time.time() - t0
        if p.returncode:
            raise RuntimeError("%s failed under QEMU:\n%s\n%s" % (script, p.stdout[-3000:], p.stderr[-3000:]))
        return p.stdout, wall
    finally:
        q.kill()
        q.wait()


def run(elf, timeout=1800):
    """Run bench/c3_device.py on the firmware under QEMU, return its output."""
    out, wall = run_script(elf, DEVICE, timeout)
    if "RESULT done 1" not in out:
        raise RuntimeError("bench/c3_device.py did not finish on the board:\n%s" % out[-3000:])
    qv = subprocess.run([QEMU, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return out + "RESULT qemu %s\nRESULT wall_s %.0f\n" % (qv.replace(" ", "_"), wall)


def main(argv):
    if len(argv) == 3 and argv[0] == "build":
        build(argv[1], argv[2])
    elif len(argv) == 2 and argv[0] == "run":
        sys.stdout.write(run(argv[1]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])

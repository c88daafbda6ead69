# Section: D-H cost per side of an IKE_SA_INIT, X25519 (group 31) vs MODP-2048
# (group 14) (issue 10 §4), and what one step of the X25519 ladder costs by
# kind of integer operation (bench/dh_ops.py).
#
# Besides CPython and the WebAssembly port (what CI has), two optional
# MicroPython columns:
#   MICROPYTHON=/path/to/micropython   MicroPython's unix port (ideally 32-bit
#                                      like an ESP32), its default fixed heap
#   C3_FIRMWARE=/path/to/firmware.elf  the ESP32-C3 stand-in of bench/c3_bench.py
#                                      (RISC-V MicroPython under QEMU, the device
#                                      set frozen in): there ticks_us counts
#                                      instructions (1 us = 1,000), so its figures
#                                      are exact instruction counts, not times
# Without them those columns say "not measured".
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "dh_bench.py")
OPS = os.path.join(HERE, "dh_ops.py")


def unix_port(bench, script):
    mp = os.environ.get("MICROPYTHON")
    if not mp:
        return None
    env = dict(os.environ, MICROPYPATH=bench.lib)
    p = subprocess.run([mp, script], capture_output=True, text=True, timeout=3600, cwd=bench.root, env=env)
    if p.returncode:
        raise RuntimeError("%s failed on %s:\n%s" % (script, mp, (p.stdout + p.stderr)[-2000:]))
    return bench.results(p.stdout)


def unix_version():
    cmd = "import sys; print('%d.%d.%d' % sys.implementation.version[:3], 64 if sys.maxsize > 2**31 else 32)"
    return subprocess.run([os.environ["MICROPYTHON"], "-c", cmd], capture_output=True, text=True).stdout.split()


def c3_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("c3_bench", os.path.join(HERE, "c3_bench.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def c3(bench, script):
    elf = os.environ.get("C3_FIRMWARE")
    if not elf:
        return None
    out, _wall = c3_tool().run_script(elf, script, timeout=3600)
    return bench.results(out)


def run(bench):
    bench.log("dh: CPython")
    cp = bench.cpython(SCRIPT)
    bench.log("dh: MicroPython (WebAssembly)")
    mp = bench.micropython(SCRIPT, paths=("lib:/lib",))
    mp_ops = bench.micropython(OPS, paths=("lib:/lib",))
    bench.log("dh: MicroPython unix port (MICROPYTHON), C3 stand-in (C3_FIRMWARE), if set")
    ux, ux_ops = unix_port(bench, SCRIPT), unix_port(bench, OPS)
    rv, rv_ops = c3(bench, SCRIPT), c3(bench, OPS)

    def col(res, name, suffix=""):
        return res[name] + suffix if res else "not measured"

    rows = [
        ("MODP-2048 (group 14): key pair + shared secret", "modp2048_ms", ""),
        ("X25519 (group 31) as ike.dh runs it (%s / %s)" % (cp["x25519_backend"], mp["x25519_backend"]), "x25519_ms", ""),
        ("X25519 with the hand-written ladder (ike.x25519)", "ladder_ms", ""),
        ("MODP-2048 cost / X25519 cost (ike.dh)", "modp_over_x25519_x", "x"),
        ("MODP-2048 cost / ladder cost", "modp_over_ladder_x", "x"),
        ("X25519 key pair alone (ike.dh: on MicroPython ike.x25519_comb)", "x25519_pair_ms", ""),
        ("X25519 shared secret alone (ike.dh: on MicroPython the ladder): a handshake's D-H when its key pair was made ahead", "x25519_shared_ms", ""),
        ("MODP-2048 cost / X25519 shared secret alone (not the target's figure: the key pair's work is done, in idle time)", "modp_over_shared_x", "x"),
    ]
    unix = "MicroPython %s unix port, %s-bit (ms)" % tuple(unix_version()) if ux else "MicroPython unix port (ms; MICROPYTHON)"
    lines = [
        "## Diffie-Hellman: X25519 vs MODP-2048",
        "",
        "`python3 bench/dh_bench.py`, `node host/qcdhost/emu/wasm/run.mjs --path lib:/lib bench/dh_bench.py`, with",
        "MICROPYTHON set `MICROPYPATH=lib $MICROPYTHON bench/dh_bench.py`, with C3_FIRMWARE set the same script on the C3",
        "stand-in (bench/c3_bench.py: RISC-V MicroPython under QEMU, where the figures are millions of instructions, exact):",
        "one side of an IKE_SA_INIT (a fresh key pair, then the shared secret from the peer's public value); best of 5",
        "alternating rounds. MODP-2048 uses a 256-bit private exponent (ike.dh). On CPython ike.dh does X25519 through `cryptography`.",
        "",
        "| figure | CPython (ms) | MicroPython WebAssembly (ms) | %s | C3 stand-in (M instructions) | target |" % unix,
        "|---|---:|---:|---:|---:|---|",
    ]
    for label, name, suffix in rows:
        target = "at least 10x" if name == "modp_over_x25519_x" else ""
        lines.append("| %s | %s | %s | %s | %s | %s |" % (label, cp[name] + suffix, mp[name] + suffix, col(ux, name, suffix), col(rv, name, suffix), target))
    lines += [
        "",
        "Where a ladder step goes: `bench/dh_ops.py` (same platforms), cost of one operation on operands of the sizes the",
        "ladder sees, times how many one step of ike.x25519's ladder does (u not 9), against the measured step",
        "((ladder - inversion) / 255). WebAssembly and unix: microseconds (the WebAssembly port's clock counts milliseconds:",
        "coarse); C3 stand-in: thousands of instructions.",
        "",
        "| operation | per step | WebAssembly (us) | unix port (us) | C3 stand-in (K instructions) |",
        "|---|---:|---:|---:|---:|",
    ]
    what = [
        ("a * b, 257-bit operands", "mul", 5),
        ("a * b, 264-bit operands (after a fold)", "mul_folded", 5),
        ("fold of a 514-bit product: (x & m) + 19 * (x >> 255)", "fold", 9),
        ("x % p of a 514-bit product (not used: for comparison)", "mod_product", 0),
        ("x % p of a folded value (< 2^279)", "mod_short", 4),
        ("a + b", "add", 8),
        ("masked pick: s = mask & (a ^ c); a ^= s", "select", 2),
        ("loop and scalar bit (small ints)", "bits", 1),
    ]
    for label, name, count in what:
        k = "op_" + name
        lines.append("| %s | %d | %s | %s | %s |" % (label, count, mp_ops[k], col(ux_ops, k), col(rv_ops, k)))
    for label, name in (("one step, sum of the above", "step_estimate_us"), ("one step, measured", "step_measured_us"),
                        ("final inversion: addition chain (ike.x25519)", "inverse_chain_us"), ("final inversion: pow(z, p - 2, p)", "inverse_pow_us"),
                        ("one X25519 call (ladder + inversion)", "ladder_us")):
        lines.append("| %s | | %s | %s | %s |" % (label, mp_ops[name], col(ux_ops, name), col(rv_ops, name)))
    return "\n".join(lines)

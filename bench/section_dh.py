# Section: D-H cost per side of an IKE_SA_INIT, X25519 (group 31) vs MODP-2048
# (group 14) (issue 10 §4).
#
# MICROPYTHON=/path/to/micropython (MicroPython's unix port, ideally 32-bit
# like an ESP32) adds a column: the same script there, on its default fixed
# heap. Without it that column says "not measured" (CI has only the
# WebAssembly port, which never collects garbage inside a running script).
import os
import subprocess

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dh_bench.py")


def unix_port(bench):
    mp = os.environ.get("MICROPYTHON")
    if not mp:
        return None, None
    env = dict(os.environ, MICROPYPATH=bench.lib)
    p = subprocess.run([mp, SCRIPT], capture_output=True, text=True, timeout=3600, cwd=bench.root, env=env)
    if p.returncode:
        raise RuntimeError("%s failed on %s:\n%s" % (SCRIPT, mp, (p.stdout + p.stderr)[-2000:]))
    version = subprocess.run([mp, "-c", "import sys; print('%d.%d.%d' % sys.implementation.version[:3], 64 if sys.maxsize > 2**31 else 32)"], capture_output=True, text=True).stdout.split()
    return bench.results(p.stdout), version


def run(bench):
    bench.log("dh: CPython")
    cp = bench.cpython(SCRIPT)
    bench.log("dh: MicroPython (WebAssembly)")
    mp = bench.micropython(SCRIPT, paths=("lib:/lib",))
    bench.log("dh: MicroPython (unix port, if MICROPYTHON is set)")
    ux, version = unix_port(bench)

    def u(name, suffix=""):
        return ux[name] + suffix if ux else "not measured"

    rows = [
        ("MODP-2048 (group 14): key pair + shared secret, ms", cp["modp2048_ms"], mp["modp2048_ms"], u("modp2048_ms"), ""),
        ("X25519 (group 31) as ike.dh runs it (%s / %s), ms" % (cp["x25519_backend"], mp["x25519_backend"]), cp["x25519_ms"], mp["x25519_ms"], u("x25519_ms"), ""),
        ("X25519 with the hand-written ladder (ike.x25519), ms", cp["ladder_ms"], mp["ladder_ms"], u("ladder_ms"), ""),
        ("MODP-2048 cost / X25519 cost (ike.dh)", cp["modp_over_x25519_x"] + "x", mp["modp_over_x25519_x"] + "x", u("modp_over_x25519_x", "x"), "at least 10x"),
        ("MODP-2048 cost / ladder cost", cp["modp_over_ladder_x"] + "x", mp["modp_over_ladder_x"] + "x", u("modp_over_ladder_x", "x"), ""),
    ]
    unix = "MicroPython %s unix port (%s-bit, `MICROPYTHON=%s`)" % (version[0], version[1], os.environ["MICROPYTHON"]) if ux else "MicroPython unix port (set MICROPYTHON)"
    lines = [
        "## Diffie-Hellman: X25519 vs MODP-2048",
        "",
        "`python3 bench/dh_bench.py`, `node host/qcdhost/emu/wasm/run.mjs --path lib:/lib bench/dh_bench.py` and, with",
        "`MICROPYTHON=/path/to/micropython`, `MICROPYPATH=lib $MICROPYTHON bench/dh_bench.py`: one side of an",
        "IKE_SA_INIT (a fresh key pair, then the shared secret from the peer's public value); best of 5 alternating rounds.",
        "MODP-2048 uses a 256-bit private exponent (ike.dh). On CPython ike.dh does X25519 through `cryptography`.",
        "",
        "| figure | CPython | MicroPython (WebAssembly) | %s | target |" % unix,
        "|---|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append("| %s | %s | %s | %s | %s |" % r)
    return "\n".join(lines)

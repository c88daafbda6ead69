# Section: D-H cost per side of an IKE_SA_INIT, X25519 (group 31) vs MODP-2048
# (group 14) (issue 10 §4).
import os

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dh_bench.py")


def run(bench):
    bench.log("dh: CPython")
    cp = bench.cpython(SCRIPT)
    bench.log("dh: MicroPython (WebAssembly)")
    mp = bench.micropython(SCRIPT, paths=("lib:/lib",))
    rows = [
        ("MODP-2048 (group 14): key pair + shared secret, ms", cp["modp2048_ms"], mp["modp2048_ms"], ""),
        ("X25519 (group 31) as ike.dh runs it (%s / %s), ms" % (cp["x25519_backend"], mp["x25519_backend"]), cp["x25519_ms"], mp["x25519_ms"], ""),
        ("X25519 with the hand-written ladder (ike.x25519), ms", cp["ladder_ms"], mp["ladder_ms"], ""),
        ("MODP-2048 cost / X25519 cost (ike.dh)", cp["modp_over_x25519_x"] + "x", mp["modp_over_x25519_x"] + "x", "at least 10x"),
        ("MODP-2048 cost / ladder cost", cp["modp_over_ladder_x"] + "x", mp["modp_over_ladder_x"] + "x", ""),
    ]
    lines = [
        "## Diffie-Hellman: X25519 vs MODP-2048",
        "",
        "`python3 bench/dh_bench.py` and `node host/qcdhost/emu/wasm/run.mjs --path lib:/lib bench/dh_bench.py`: one side of an",
        "IKE_SA_INIT (a fresh key pair, then the shared secret from the peer's public value); best of 5 alternating rounds.",
        "MODP-2048 uses a 256-bit private exponent (ike.dh). On CPython ike.dh does X25519 through `cryptography`.",
        "",
        "| figure | CPython | MicroPython (WebAssembly) | target |",
        "|---|---:|---:|---|",
    ]
    for r in rows:
        lines.append("| %s | %s | %s | %s |" % r)
    return "\n".join(lines)

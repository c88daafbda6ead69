# Section: half-open IKE SAs (issue 13 §2): heap per half-open SA as a
# responder holds it, and what the caps (half_open_max,
# half_open_per_source) bound a flood from one address to.
import os

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "halfopen_bench.py")


def run(bench):
    bench.log("halfopen: CPython")
    cp = bench.cpython(SCRIPT)
    bench.log("halfopen: MicroPython (WebAssembly)")
    mp = bench.micropython(SCRIPT, paths=("lib:/lib", "bench/engine_pair.py:/lib/engine_pair.py"))
    L = []
    L.append("## Half-open IKE SAs: heap per SA and the caps")
    L.append("")
    L.append("`python3 bench/halfopen_bench.py` and `node host/qcdhost/emu/wasm/run.mjs --path lib:/lib --path bench/engine_pair.py:/lib/engine_pair.py bench/halfopen_bench.py`.")
    L.append("A responder engine answers IKE_SA_INIT requests (one initiator's request, %s octets with X25519, the default" % mp["request_bytes"])
    L.append("group, %s with MODP-2048, the SPI changed); each answered one is a half-open IKE SA: its keys, both IKE_SA_INIT" % mp["request_modp_bytes"])
    L.append("messages (kept for AUTH, RFC 7296 §2.15), nonces and table entries; every one also cost a D-H computation (two")
    L.append("X25519 scalar multiplications or MODP-2048 exponentiations). MicroPython: `gc.mem_alloc()` after a")
    L.append("top-level collection; CPython: `tracemalloc`. `cookie_threshold` is out of the way here: echoing the COOKIE")
    L.append("(what an attacker that receives its answers does) changes nothing in what is held (host_tests/test_ike_sa_init_limits.py).")
    L.append("")
    L.append("| figure | CPython | MicroPython (WebAssembly) |")
    L.append("|---|---:|---:|")
    L.append("| heap per half-open IKE SA, X25519 (%s held) | %s B | %s B |" % (mp["n_measured"], cp["per_half_open_bytes"], mp["per_half_open_bytes"]))
    L.append("| heap per half-open IKE SA, MODP-2048 (%s held) | %s B | %s B |" % (mp["n_measured"], cp["per_half_open_modp_bytes"], mp["per_half_open_modp_bytes"]))
    L.append(
        "| %s requests from one address, default caps (%s global, %s per source): held / dropped oldest-first | %s / %s | %s / %s |"
        % (mp["flood_requests"], mp["cap_global"], mp["cap_per_source"], cp["flood_held"], cp["flood_dropped"], mp["flood_held"], mp["flood_dropped"])
    )
    L.append("| heap those %s requests leave behind | %s B | %s B |" % (mp["flood_requests"], cp["flood_heap_bytes"], mp["flood_heap_bytes"]))
    per = max(float(mp["per_half_open_bytes"]), float(mp["per_half_open_modp_bytes"]))
    L.append("")
    L.append(
        "Bound on MicroPython (computed from the larger per-SA figure): at most %s half-open SAs, about %.0f KB, however many sources;"
        " without the caps the same %s requests would have held %s SAs, about %.0f KB. A device that only initiates"
        " (`accept_ike_sa_init` false, its default) holds none: it answers no IKE_SA_INIT."
        % (mp["cap_global"], per * int(mp["cap_global"]) / 1000, mp["flood_requests"], mp["flood_requests"], per * int(mp["flood_requests"]) / 1000)
    )
    return "\n".join(L)

# Section: token throughput, refusal cost and heap use of lib/qcd (issue: QCD core).
import os

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "core_bench.py")


def run(bench):
    bench.log("core: CPython")
    cp = bench.cpython(SCRIPT)
    bench.log("core: MicroPython (WebAssembly)")
    mp = bench.micropython(SCRIPT)
    rows = [
        ("HMAC-SHA-256 alone (`hmac.new(...).digest()`: CPython's hmac, micropython-lib's), per s", cp["hmac_per_s"], mp["hmac_per_s"], ""),
        ("QCD tokens (`qcd.tokens.make_token`), per s", cp["tokens_per_s"], mp["tokens_per_s"], ""),
        ("token cost / bare HMAC cost (`ikebase.hmac256`, pads once per secret)", cp["token_overhead_x"] + "x", mp["token_overhead_x"] + "x", "MicroPython: at most 0.25x"),
        ("garbage datagrams refused by the maker, per s", cp["refusals_per_s"], mp["refusals_per_s"], ""),
        ("heap after `import qcd.hook` (QCD alone; the firmware app imports far more: the memory section)", "-", mp["heap_import_bytes"] + " B", "under 24 KB"),
        ("heap per IKE SA whose token the taker holds (100 SAs)", "-", mp["heap_per_sa_bytes"] + " B", "under 100 B"),
    ]
    lines = [
        "## QCD core: tokens, refusals, heap",
        "",
        "`python3 bench/core_bench.py` and `node host/qcdhost/emu/wasm/run.mjs --path lib/qcd:/lib/qcd --path lib/ikebase:/lib/ikebase bench/core_bench.py`;",
        "best of 5 alternating rounds. Heap from `gc.mem_alloc()` after a top-level collection.",
        "",
        "| figure | CPython | MicroPython (WebAssembly) | target |",
        "|---|---:|---:|---|",
    ]
    for r in rows:
        lines.append("| %s | %s | %s | %s |" % r)
    return "\n".join(lines)

# Section: the real gateway's answers while strangers flood the maker with
# unknown-SA requests (issue 13 §2: a lane of its own for the known gateways).
import os

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flood_bench.py")


def run(bench):
    bench.log("flood: CPython (simulated time, the same figures on any Python)")
    r = bench.cpython(SCRIPT)
    lines = [
        "## Unprotected answers under a flood: the gateway's lane",
        "",
        "`python3 bench/flood_bench.py`: a rebooted device's `QcdHook` (maker, default rate limit: 5 answers/s, burst 10, per lane)",
        "gets the real gateway's liveness checks for its stale SA (one a second from the gateway's address, for %s s of" % r["duration_s"],
        "simulated time) while protected-looking requests for unknown SPIs arrive from 250 other addresses. Two makers side by",
        "side in one run: *lane*, the gateway known from the persisted §8.2 map and the configured peer (its own bucket); *single*,",
        "the same maker with one bucket for every source (the rate limiter before issue 13 §2).",
        "",
        "| unknown-SA requests/s from others | gateway's checks answered, lane | gateway's checks answered, single bucket | answers/s to the others, lane | answers/s to the others, single | target |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for flood in ("0", "10", "100", "1000"):
        lines.append(
            "| %s | %s%% | %s%% | %s | %s | %s |"
            % (
                flood,
                r["lane_%s_gw_share" % flood],
                r["single_%s_gw_share" % flood],
                r["lane_%s_flood_answers_per_s" % flood],
                r["single_%s_flood_answers_per_s" % flood],
                "lane: 100%" if flood == "1000" else "",
            )
        )
    return "\n".join(lines)

# Section: the firmware app's heap on the virtual board with networking
# (vboard --net --headless).
#
# The WebAssembly port collects garbage only at the top level, and the app's
# IKE loop never returns there by itself; the board unwinds it to the top
# level and resumes it (qcdapp.resume()) once --yield-kb KiB have been
# allocated (vboard.mjs). Two boards side by side, each running the app
# against its own qcd-peer gateway that sends a liveness check every 2 s:
# one with the yield at 256 KiB, one with it effectively off. Figures come
# from the boards' --gc-log lines (gc.mem_alloc() at each top-level
# collection and every 30 s).
#
# VBOARD_BENCH_S sets the run length (default 180 s).
import json
import os
import re
import tempfile
import time

from qcdhost import harness
from qcdhost.harness import HeadlessBoard, Peer, gateway_config, one_up

VARIANTS = (("yield at 256 KiB", "256"), ("no yield (1 GB)", "1000000"))
HEAP = re.compile(r"vboard: heap (\d+) bytes allocated at (\d+) s; process RSS (\d+) bytes")
GC = re.compile(r"vboard: gc \d+ at top level: (\d+) -> (\d+) bytes allocated; process RSS (\d+) bytes")


def app_config(path, gw_ports):
    with open(path, "w") as f:
        json.dump(harness.app_config(gw_ports), f)
    return path


def run(bench):
    secs = int(os.environ.get("VBOARD_BENCH_S", "180"))
    tmp = tempfile.mkdtemp(prefix="qcd-bench-vboard-")
    runs = []
    try:
        for k, (name, kb) in enumerate(VARIANTS):
            d = os.path.join(tmp, str(k))
            os.makedirs(os.path.join(d, "board"))
            gw = Peer(d, "gw", gateway_config(), pcap=False).start()
            board = HeadlessBoard(os.path.join(d, "board"), extra=["--net", "--gc-log", "--yield-kb", kb])
            runs.append((name, gw, board))
            board.start(app=app_config(os.path.join(d, "qcd.json"), gw.ports()))
        for _, gw, _ in runs:
            gw.wait(one_up, timeout=120, what="IKE SA from the app")
        bench.log("virtual board: %d s of liveness checks every 2 s, two boards side by side" % secs)
        sent = 0
        end = time.monotonic() + secs
        while time.monotonic() < end:
            time.sleep(2)
            for _, gw, _ in runs:
                gw.ctl("liveness")
            sent += 1
        rows = []
        for name, gw, board in runs:
            out = board.output()
            heaps = [(int(t), int(h), int(r)) for h, t, r in HEAP.findall(out)]
            gcs = [(int(a), int(b), int(r)) for a, b, r in GC.findall(out)]
            answered = gw.log().count("liveness check of")
            rows.append((name, heaps, gcs, answered, len(gw.status()["ike_sas"])))
    finally:
        for _, gw, board in runs:
            board.kill()
            gw.kill()

    def cell(f):
        return " | ".join(f(r) for r in rows)

    def growth(r):
        h = r[1]
        if len(h) < 2 or h[-1][0] == h[0][0]:
            return "-"
        return "%.1f KB/min" % ((h[-1][1] - h[0][1]) / 1000.0 / ((h[-1][0] - h[0][0]) / 60.0))

    def live(r):
        after = [g[1] for g in r[2]]
        return "%d-%d B" % (min(after), max(after)) if after else "-"

    lines = [
        "## The firmware app on the virtual board (--net): heap while it runs",
        "",
        "%d s of an IKE SA with a liveness check from the gateway every 2 s (%d sent to each board), two headless boards side by side; figures from `--gc-log` (`gc.mem_alloc()`)." % (secs, sent),
        "",
        "| figure | " + " | ".join(r[0] for r in rows) + " |",
        "|---|" + "---:|" * len(rows),
        "| liveness checks answered | " + cell(lambda r: "%d, IKE SAs at the end: %d" % (r[3], r[4])) + " |",
        "| top-level collections | " + cell(lambda r: str(len(r[2]))) + " |",
        "| bytes allocated after each collection (min-max) | " + cell(live) + " |",
        "| bytes allocated, last 30-s sample | " + cell(lambda r: "%d B at %d s" % (r[1][-1][1], r[1][-1][0]) if r[1] else "-") + " |",
        "| heap growth between 30-s samples, first to last | " + cell(growth) + " |",
        "| process RSS, first and last sample | " + cell(lambda r: "%.1f / %.1f MB" % (r[1][0][2] / 1e6, r[1][-1][2] / 1e6) if r[1] else "-") + " |",
        "",
        "Without the yield the port never collects while the app runs (the allocation count only grows); with it the live heap after every collection stays flat.",
        "",
    ]
    return "\n".join(lines)

# tools/demo.py (make demo): both runs end to end with the device on CPython,
# and the QCD run with the device on the WebAssembly virtual board (what
# `make demo` picks by default), each with a power cut torn into a flash
# write. What is pinned is behaviour, not speed: with QCD the gateway deletes
# the stale SA because of a verified token and brings a new one up; without
# QCD only its liveness schedule ends it; the pcap holds the unprotected QCD
# answer as tshark decodes it; the timeline picture is a PNG.
import json
import os
import subprocess
import sys

import pytest
from support import ROOT, need_micropython, need_tool

DEMO = os.path.join(ROOT, "tools", "demo.py")


@pytest.mark.parametrize("device", ["cpython", "wasm"])
def test_demo_runs_both_reboots_and_writes_its_outputs(tmp_path, device):
    out = tmp_path / "demo"
    if device == "wasm":
        need_micropython()
    args = ["--device", device, "--out", str(out)] + (["--no-baseline"] if device == "wasm" else [])
    p = subprocess.run([sys.executable, DEMO, *args], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["device"] == device
    assert "power cut in the middle of that flash write" in p.stdout
    with_qcd = res["runs"][0]
    assert with_qcd["how"] == "peer rebooted (verified QCD token)"
    if device == "cpython":
        without = res["runs"][1]
        assert without["how"].startswith("peer did not answer")
        assert without["recover_s"] >= without["detect_s"]
    assert with_qcd["recover_s"] >= with_qcd["detect_s"]
    # The output a newcomer reads: each step on a timestamped line, and the comparison.
    assert "*** power cut" in p.stdout and "=== results ===" in p.stdout
    assert "time to detect the dead SA" in p.stdout and "(computed)" in p.stdout
    png = (out / "timeline.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000
    # Wireshark's decoder finds the QCD notify in the unprotected answer.
    tshark = need_tool("tshark")
    pcap = str(out / "demo.pcap")
    decode = []
    if "standard IKE ports" not in p.stdout:
        for line in p.stdout.splitlines():
            if "open with: wireshark" in line:
                decode = line.split("open with: wireshark", 1)[1].strip(" )").split()[:-1]
    t = subprocess.run([tshark, "-r", pcap, *decode, "-Y", "isakmp.notify.msgtype == 16419 && isakmp.flags", "-T", "fields",
                        "-e", "isakmp.notify.msgtype"], capture_output=True, text=True, timeout=120)
    assert t.returncode == 0, t.stderr
    kinds = {line for line in t.stdout.split()}
    assert any(k.startswith("4,16419") or k.startswith("11,16419") for k in kinds), t.stdout[:2000]


def test_demo_with_readings_shows_them_stop_at_the_power_cut_and_resume(tmp_path):
    # --readings: the device runs firmware/readings.py (the IKE loop as an
    # asyncio task) against the gateway's echo service; its readings are
    # answered before the cut, not sent while the tunnel is down, answered
    # again after the new tunnel is up, with QCD sooner than without.
    out = str(tmp_path / "demo")
    p = subprocess.run([sys.executable, DEMO, "--device", "cpython", "--readings", "--out", out], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    with_qcd, without = res["runs"]
    assert with_qcd["how"] == "peer rebooted (verified QCD token)" and without["how"].startswith("peer did not answer")
    for r in (with_qcd, without):
        assert r["resumed_s"] >= r["recover_s"]
    assert with_qcd["resumed_s"] < without["resumed_s"]
    assert "app: answer from 10.1.0.1:7" in p.stdout and "not sent: no Child SA is up" in p.stdout
    assert "readings answered again" in p.stdout
    png = open(os.path.join(out, "timeline.png"), "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"

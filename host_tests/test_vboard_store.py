# The device workflow end to end on the virtual board, with the flash store:
# a secret provisioned on the host (qcdtool image new / provision) into the
# `qcd` partition of a whole-flash image (qcdboard image), lib/qcd deployed
# with mpremote (qcdboard deploy), then qcdboard diag and dump against the
# board: the fingerprint is the provisioned secret's, the secret itself never
# appears; after a power cycle (a new process on the same image) the same.
import hashlib
import os
import subprocess
import sys

import pytest
from support import FIRMWARE, QCDBOARD, QCDTOOL
from vboard_util import VBoard

SECRET = bytes(range(0x40, 0x60))  # known, 32 bytes
FP = hashlib.sha256(SECRET).digest()[:8].hex()  # qcd.tokens.fingerprint


def run(*cmd):
    return subprocess.run([sys.executable] + list(cmd), capture_output=True, text=True, timeout=300)


@pytest.fixture(params=[False, True], ids=["plain", "flash-encryption"])
def provisioned(request, tmp_path):
    encrypted = request.param
    secret = tmp_path / "secret.bin"
    secret.write_bytes(SECRET)
    part = tmp_path / "qcd.img"
    r = run(QCDTOOL, "image", "new", str(part), "--blocks", "16", *(["--encrypted"] if encrypted else []))
    assert r.returncode == 0, r.stderr
    r = run(QCDTOOL, "provision", str(part), "--secret-file", str(secret))
    assert r.returncode == 0, r.stderr
    state = tmp_path / "board"
    state.mkdir()
    r = run(QCDBOARD, "image", "-o", str(state / "flash.bin"), "--qcd", str(part))
    assert r.returncode == 0, r.stderr
    if encrypted:
        # The image holds ciphertext only: the secret is nowhere in it.
        assert SECRET not in (state / "flash.bin").read_bytes()
    vb = VBoard(state, extra=["--flash-encryption"] if encrypted else []).start()
    yield vb, encrypted
    vb.stop()


def diag(vb):
    r = vb.qcdboard("diag", "--port", vb.tty)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def assert_no_secret(text):
    assert SECRET.hex() not in text.lower()
    assert SECRET.hex(" ") not in text.lower()
    assert repr(SECRET) not in text


def test_diag_shows_the_provisioned_fingerprint_never_the_secret(provisioned):
    vb, encrypted = provisioned
    assert vb.qcdboard("deploy", "--port", vb.tty, "--packages", "qcd").returncode == 0
    # The package imports on the board.
    assert vb.exec("import qcd.store, qcd.diag\nprint('ok')").strip() == "ok"
    out = diag(vb)
    assert FP in out, out
    # The board says which qcd it runs: the one version (test_version.py).
    assert "qcd: version %s" % __import__("qcd").__version__ in out.splitlines(), out
    assert "boot_count" in out and "block_state" in out and "child_map" in out
    assert_no_secret(out)
    # Power cycle: a new board process on the same image; same fingerprint.
    vb.power_cycle()
    out2 = diag(vb)
    assert FP in out2
    assert_no_secret(out2)


def test_diag_puts_the_stores_damage_codes_in_words(tmp_path):
    # A torn write after the provisioned secret's record: the board reports
    # it as a code (qcd.log), qcdboard diag says what it is.
    import json

    secret = tmp_path / "secret.bin"
    secret.write_bytes(SECRET)
    part = tmp_path / "qcd.img"
    assert run(QCDTOOL, "image", "new", str(part), "--blocks", "16").returncode == 0
    assert run(QCDTOOL, "provision", str(part), "--secret-file", str(secret)).returncode == 0
    r = run(QCDTOOL, "inspect", str(part), "--json")
    live = [b for b in json.loads(r.stdout)["block_state"] if b["state"] == "live"]
    assert len(live) == 1
    off = live[0]["block"] * 4096 + 32 + live[0]["bytes_used"]
    data = bytearray(part.read_bytes())
    data[off : off + 16] = bytes(16)
    part.write_bytes(bytes(data))
    state = tmp_path / "board"
    state.mkdir()
    assert run(QCDBOARD, "image", "-o", str(state / "flash.bin"), "--qcd", str(part)).returncode == 0
    vb = VBoard(state).start()
    try:
        assert vb.qcdboard("deploy", "--port", vb.tty, "--packages", "qcd").returncode == 0
        out = diag(vb)
    finally:
        vb.stop()
    want = "block %d: torn or damaged bytes at offset %d (a write cut short?)" % (live[0]["block"], 32 + live[0]["bytes_used"])
    assert want in out, out
    assert FP in out


def test_dump_decodes_the_partition_over_the_repl_and_from_the_image(provisioned, tmp_path):
    vb, encrypted = provisioned
    assert vb.qcdboard("deploy", "--port", vb.tty, "--packages", "qcd").returncode == 0
    r = vb.qcdboard("dump", "--port", vb.tty, "--repl")
    assert r.returncode == 0, r.stdout + r.stderr
    assert FP in r.stdout
    assert_no_secret(r.stdout + r.stderr)
    vb.stop()
    r = vb.qcdboard("dump", "--image", vb.flash, "--out", str(tmp_path / "qcd.bin"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert FP in r.stdout
    assert ("encrypted" in r.stdout) == encrypted


def test_store_mount_on_the_board_counts_boots_across_power_cycles(provisioned):
    vb, _ = provisioned
    assert vb.qcdboard("deploy", "--port", vb.tty, "--packages", "qcd").returncode == 0
    code = (
        "import esp32, os\n"
        "from qcd import store\n"
        "from qcd.tokens import fingerprint\n"
        "p = esp32.Partition.find(esp32.Partition.TYPE_DATA, label='qcd')[0]\n"
        "s = store.mount(p, rng=os.urandom)\n"
        "print(s.boot_count, fingerprint(s.secrets()[0]))\n"
    )
    first = vb.exec(code).split()
    vb.power_cycle()
    second = vb.exec(code).split()
    assert first[1] == second[1] == FP
    assert int(second[0]) == int(first[0]) + 1


def test_firmware_app_mounts_the_store_at_power_on_and_diag_shows_it(provisioned, tmp_path):
    vb, _ = provisioned
    cfg = tmp_path / "qcd.json"
    cfg.write_text(open(os.path.join(FIRMWARE, "qcd.json.example")).read())
    r = vb.qcdboard("deploy", "--port", vb.tty, "--packages", "qcd", "--app", "--config", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    for cycle in (1, 2):
        vb.power_cycle()  # main.py runs at power-on
        out = diag(vb)
        assert "app: ready; IKE not started: this board has no socket module" in out, out
        assert FP in out
        # The hook built on the store: maker counters, live SAs.
        assert "hook:" in out and "live_ike_sas: 0" in out and "role: maker" in out
        assert "boot_count: %d" % cycle in out
        assert_no_secret(out)

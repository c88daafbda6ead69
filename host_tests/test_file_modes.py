# Every file the tools write that can hold a secret is created 0600 and
# atomically (issue 13 §3), under the umask most systems run with, 022,
# which would make a plain open() world-readable (0644). For each writer:
# the modes of what it wrote, no temporary file left beside it, and, where
# a world-readable file was already in the way, a new file (another inode:
# written fresh and renamed over it, not chmod-ed after the secret went in).
#   qcdtool image new (image + sidecar; the sidecar of an encrypted image
#   holds its device key), qcdtool provision (the secret in clear), qcd-peer's
#   qcd.image and qcd.secret_file, qcdboard image -o and dump --out (with
#   their sidecars), the firmware app on CPython (qcdhost.emu.hostapp), and
#   the virtual board: its flash image, sidecar and filesystem files (its
#   qcd.json holds the IKE key).
import json
import os
import stat
import subprocess
import sys

import pytest
from peers import gateway_config
from support import QCD_PEER, QCDBOARD, QCDTOOL, VBOARD, need_micropython

SIDECAR = ".emu.json"


@pytest.fixture(autouse=True)
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def assert_private(*paths):
    for p in paths:
        assert os.path.exists(p), p
        assert mode(p) == 0o600, "%s is %o" % (p, mode(p))


def assert_no_temporaries(d):
    left = [n for n in os.listdir(d) if n.endswith(".tmp")]
    assert not left, left


def world_readable(path, data=b"old"):
    """A file in the way, as an earlier tool or a plain shell redirect under
    umask 022 would leave it; returns its inode."""
    if os.path.exists(path):
        os.unlink(path)
    with open(path, "wb") as f:
        f.write(data)
    assert mode(path) == 0o644
    return os.stat(path).st_ino


def run(*argv, **kw):
    p = subprocess.run([sys.executable] + [str(a) for a in argv], capture_output=True, text=True, timeout=300, **kw)
    assert p.returncode == 0, p.stdout + p.stderr
    return p


def secret_file(tmp_path):
    p = tmp_path / "secret.bin"
    p.write_bytes(bytes(range(32)))
    return p


def test_a_plain_open_would_be_world_readable_here():
    # The premise: under this umask an ordinary write makes 0644, so the
    # checks below would fail for a writer that does not take care.
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x")
        open(p, "w").close()
        assert mode(p) == 0o644


@pytest.mark.parametrize("encrypted", [False, True])
def test_qcdtool_image_new_creates_image_and_sidecar_0600(tmp_path, encrypted):
    img = tmp_path / "qcd.img"
    run(QCDTOOL, "image", "new", img, "--blocks", "4", *(["--encrypted"] if encrypted else []))
    assert_private(img, str(img) + SIDECAR)
    # --force over world-readable files: replaced by new 0600 files.
    ino = world_readable(img)
    side = world_readable(str(img) + SIDECAR, b"{}")
    run(QCDTOOL, "image", "new", img, "--blocks", "4", "--force", *(["--encrypted"] if encrypted else []))
    assert_private(img, str(img) + SIDECAR)
    assert os.stat(img).st_ino != ino and os.stat(str(img) + SIDECAR).st_ino != side
    assert_no_temporaries(tmp_path)


def test_qcdtool_provision_writes_the_secret_only_into_a_private_image(tmp_path):
    img = tmp_path / "qcd.img"
    run(QCDTOOL, "image", "new", img, "--blocks", "4")
    p = run(QCDTOOL, "provision", img, "--secret-file", secret_file(tmp_path))
    assert_private(img, str(img) + SIDECAR)
    assert "readable by others" not in p.stderr
    # An image made elsewhere (an erased dump, world-readable): provision
    # takes group and other access away before the secret goes in.
    other = tmp_path / "dump.img"
    world_readable(other, b"\xff" * (4 * 4096))
    p = run(QCDTOOL, "provision", other, "--secret-file", secret_file(tmp_path))
    assert_private(other)
    assert "dump.img was readable by others; now 0600" in p.stderr
    assert bytes(range(32)) in other.read_bytes()  # a plain image: the secret in clear, hence 0600
    assert_no_temporaries(tmp_path)


def test_qcd_peer_creates_its_image_and_secret_file_0600(tmp_path):
    img = tmp_path / "gw.img"
    cfg = tmp_path / "a.json"
    cfg.write_text(json.dumps(gateway_config(qcd={"role": "maker", "image": str(img), "image_encrypted": True})))
    run(QCD_PEER, "check", cfg)
    assert_private(img, str(img) + SIDECAR)
    sec = tmp_path / "gw.secret"
    cfg.write_text(json.dumps(gateway_config(qcd={"role": "maker", "secret_file": str(sec)})))
    run(QCD_PEER, "check", cfg)
    assert_private(sec)
    assert_no_temporaries(tmp_path)


def test_qcdboard_image_and_dump_out_are_0600(tmp_path):
    part = tmp_path / "qcd.img"
    run(QCDTOOL, "image", "new", part, "--blocks", "16", "--encrypted")
    run(QCDTOOL, "provision", part, "--secret-file", secret_file(tmp_path))
    flash = tmp_path / "flash.bin"
    ino = world_readable(flash)
    run(QCDBOARD, "image", "-o", flash, "--qcd", part)
    assert_private(flash, str(flash) + ".qcd" + SIDECAR)
    assert os.stat(flash).st_ino != ino
    raw = tmp_path / "raw.bin"
    run(QCDBOARD, "dump", "--image", flash, "--out", raw)
    assert_private(raw, str(raw) + SIDECAR)
    assert_no_temporaries(tmp_path)


def test_firmware_app_on_cpython_creates_its_partition_image_0600(tmp_path):
    cfg = tmp_path / "qcd.json"
    cfg.write_text("[1, 2]")  # refused by the app's setup: only the image matters here
    img = tmp_path / "qcd.img"
    subprocess.run([sys.executable, "-m", "qcdhost.emu.hostapp", "--image", str(img), "--config", str(cfg), "--encrypted"],
                   capture_output=True, text=True, timeout=120)
    assert_private(img, str(img) + SIDECAR)


def test_virtual_board_flash_sidecar_and_files_are_0600(tmp_path):
    need_micropython()
    from qcdhost.emu import vboard
    from qcdhost.esp import remote

    # --app's copy of the configuration (it holds the IKE key).
    fs = tmp_path / "fs"
    cfg = tmp_path / "my-qcd.json"
    cfg.write_text(json.dumps({"psk": "a-long-pre-shared-key"}))
    vboard.install_app(str(fs), str(cfg))
    assert_private(fs / "qcd.json")
    # The board mounts the store on its encrypted qcd partition (a secret
    # is created, and the sidecar with the device key) and writes a file.
    for host, dev in remote.package_files(remote.with_needs(["qcd"])):
        dest = fs / dev
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(open(host, "rb").read())
    (fs / "main.py").write_text(
        "import esp32\nfrom qcd import store\n"
        "p = esp32.Partition.find(esp32.Partition.TYPE_DATA, label='qcd')[0]\n"
        "s = store.mount(p)\nprint('SECRETS', len(s.secrets()))\n"
        "with open('/note.txt', 'w') as f:\n    f.write('made on the board')\n"
    )
    p = subprocess.run([sys.executable, VBOARD, "--dir", str(tmp_path), "--headless", "--flash-encryption"], capture_output=True, text=True, timeout=300)
    assert "SECRETS 1" in p.stdout, p.stdout + p.stderr
    assert_private(tmp_path / "flash.bin", str(tmp_path / "flash.bin") + ".qcd" + SIDECAR, fs / "note.txt")
    assert_no_temporaries(tmp_path)
    assert_no_temporaries(fs)

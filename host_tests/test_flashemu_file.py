# The flash emulator (qcdhost.emu.flash) over an image file: a reboot is a new process on the same
# image, and what the emulator keeps beside it (erase counters, encryption
# mode and device key) survives, even a process killed mid-run.
import json
import os
import signal
import subprocess
import sys

from qcd.store import Store
from qcdhost.emu import flash as flashemu

WRITER = r"""
import os, signal, sys
from qcdhost.emu import flash as flashemu
from qcd.store import Store
e = flashemu.FlashEmu(flashemu.FileBacking(sys.argv[1]))
s = Store(e, lambda n: bytes(range(n)))
for spi in range(1, int(sys.argv[2]) + 1):
    s.child_put(spi, b"i" * 8, b"r" * 8, True, bytes([10, 0, 0, spi % 250]))
    print(spi, flush=True)  # acknowledged
os.kill(os.getpid(), signal.SIGKILL)  # the power goes: no clean exit, no close
"""


def test_a_killed_device_process_keeps_every_acknowledged_write(tmp_path):
    img = str(tmp_path / "q.img")
    flashemu.create_image(img, 6, encrypted=True)
    p = subprocess.run([sys.executable, "-c", WRITER, img, "300"], capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr
    acked = [int(x) for x in p.stdout.split()]
    assert acked[-1] == 300
    s = Store(flashemu.FlashEmu(flashemu.FileBacking(img)), None, count_boot=False)
    assert sorted(spi for spi, _ in s.children()) == sorted(acked)[-s.max_children:]
    assert s.boot_count == 1


def test_erase_counters_and_encryption_survive_a_new_process(tmp_path):
    img = str(tmp_path / "q.img")
    flashemu.create_image(img, 4, encrypted=True)
    key = json.load(open(img + ".emu.json"))["key"]
    for _ in range(2):
        subprocess.run([sys.executable, "-c", WRITER, img, "400"], capture_output=True, timeout=120)
    meta = json.load(open(img + ".emu.json"))
    assert meta["encrypted"] is True and meta["key"] == key
    assert sum(meta["erases"]) >= 4
    e = flashemu.FlashEmu(flashemu.FileBacking(img))
    assert e.encrypted and e.erase_counts == meta["erases"]
    # The image holds ciphertext: the secret is not in it in the clear.
    s = Store(e, None, count_boot=False)
    assert s.secrets()[0] == bytes(range(32))
    assert bytes(range(32)) not in open(img, "rb").read()
    assert not os.path.exists(img + ".emu.json.tmp")


def test_a_raw_image_without_sidecar_is_plain_flash(tmp_path):
    img = str(tmp_path / "dump.bin")
    with open(img, "wb") as f:
        f.write(b"\xff" * 4 * 4096)
    e = flashemu.FlashEmu(flashemu.FileBacking(img, readonly=True), readonly=True)
    assert not e.meta_from_sidecar and not e.encrypted
    assert not os.path.exists(img + ".emu.json")

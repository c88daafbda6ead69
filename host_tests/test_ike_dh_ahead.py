# The next X25519 key pair made in idle time (ike.dh.prepare, called by
# ike.device's loop and ike.aio's task when nothing is due) and the MODP
# primes loaded only when a MODP group is used (ike.modp). The pool's own
# rules (each pair once, per rng, half-made pairs finished) are in
# host_tests/portable/test_x25519.py, which runs on MicroPython too.
import asyncio
import os
import time

from peers import Peer, device_config, free_local, gateway_config
from support import run_fresh

from ike import aio, crypto, device, dh
from ike.const import CURVE25519, MODP_2048


class Rng:
    def __init__(self):
        self.calls = 0

    def __call__(self, n):
        self.calls += 1
        return os.urandom(n)


def clean_pool():
    crypto._ahead[:] = []
    crypto._job[:] = []
    crypto._stalled[:] = []


def test_the_device_loop_makes_the_next_key_pair_once_quiet_and_a_handshake_takes_it(tmp_path):
    clean_pool()
    gw = Peer(str(tmp_path), "gw", gateway_config()).start()
    try:
        rng = Rng()
        seen = {}

        def stop():
            # the first handshake after boot made its key pair then (none
            # was ready): the loop prepares the next one after the SA is up
            if "up" not in seen and eng_box and eng_box[0].children:
                seen["up"] = time.monotonic()
                seen["ready_at_up"] = dh.ready(rng)
            return dh.ready(rng) == 1

        eng_box = []
        eng = device.new_engine(device_config(gw.ports()), rng=rng, log=lambda line: None)
        eng_box.append(eng)
        device.run(None, engine=eng, stop=stop, max_ms=30000)
        assert eng.children and seen["ready_at_up"] == 0
        assert dh.ready(rng) == 1
        pair = crypto._ahead[0]
        kp = dh.KeyPair(CURVE25519, rng)  # what the next IKE_SA_INIT or rekey does
        assert (kp._x, kp.public) == (pair[1], pair[2])
        assert dh.ready(rng) == 0
    finally:
        gw.kill()
        clean_pool()


def test_the_device_loop_prepares_nothing_when_the_config_has_no_group_31(tmp_path):
    clean_pool()
    gw = Peer(str(tmp_path), "gw", gateway_config()).start()
    try:
        rng = Rng()
        eng = device.new_engine(device_config(gw.ports(), dh_groups=[MODP_2048]), rng=rng, log=lambda line: None)
        up = []

        def stop():
            if eng.children and not up:
                up.append(time.monotonic())
            return bool(up) and time.monotonic() - up[0] > 1.0  # well past QUIET_MS

        device.run(None, engine=eng, stop=stop, max_ms=30000)
        assert eng.children and [sa.group for sa in eng.sas.values()] == [MODP_2048]
        assert dh.ready(rng) == 0 and crypto._job == []
    finally:
        gw.kill()
        clean_pool()


def test_the_asyncio_loop_makes_the_next_key_pair_when_idle():
    clean_pool()
    rng = Rng()
    # a responder nobody talks to: idle from the start
    cfg = device_config((500, 4500), role="responder", local=free_local())
    eng = device.new_engine(cfg, rng=rng, log=lambda line: None)

    async def main():
        t0 = time.monotonic()
        await aio.serve(eng, stop=lambda: dh.ready(rng) == 1 or time.monotonic() - t0 > 20)

    asyncio.run(main())
    try:
        assert dh.ready(rng) == 1
    finally:
        clean_pool()


def test_the_modp_primes_are_loaded_only_for_a_modp_group():
    # a fresh interpreter: an X25519 handshake's key pair and shared secret,
    # then a MODP-2048 key pair
    script = (
        "import sys\n"
        "from ike import dh\n"
        "from ike.const import CURVE25519, MODP_2048\n"
        "a, b = dh.KeyPair(CURVE25519), dh.KeyPair(CURVE25519)\n"
        "assert a.shared(b.public) == b.shared(a.public)\n"
        "assert dh.public_len(MODP_2048) == 256\n"
        "print('before', 'ike.modp' in sys.modules)\n"
        "dh.KeyPair(MODP_2048)\n"
        "print('after', 'ike.modp' in sys.modules)\n"
    )
    p = run_fresh(script, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["before", "False", "after", "True"]


def test_a_pair_being_made_survives_unloading_dh_and_x25519():
    # what ike.engine does between handshakes: drop ike.dh, ike.x25519 and
    # ike.x25519_comb from sys.modules, here in the middle of a pair (the
    # hand-written X25519, in slices, as on MicroPython)
    script = (
        "import sys\n"
        "from ike import crypto\n"
        "crypto._x25519 = None\n"
        "n = [0]\n"
        "def rng(k):\n"
        "    n[0] += 1\n"
        "    return bytes([n[0]]) * k\n"
        "assert crypto.prepare(rng) and crypto.prepare(rng) and crypto._job\n"
        "import ike\n"
        "for m in ('dh', 'x25519', 'x25519_comb'):\n"
        "    sys.modules.pop('ike.' + m, None)\n"
        "    if hasattr(ike, m):\n"
        "        delattr(ike, m)\n"
        "while crypto.prepare(rng):\n"
        "    pass\n"
        "print('ready', crypto.ready(rng), 'loaded', 'ike.x25519' in sys.modules)\n"
        "from ike import dh, x25519\n"
        "from ike.const import CURVE25519\n"
        "kp = dh.KeyPair(CURVE25519, rng)\n"
        "print('taken', kp._x == bytes([1]) * 32, kp.public == x25519.public_key(kp._x), crypto.ready(rng), n[0])\n"
    )
    p = run_fresh(script)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["ready", "1", "loaded", "False", "taken", "True", "True", "0", "1"]


def test_running_out_of_memory_while_preparing_stops_quietly_until_a_pair_is_taken(monkeypatch):
    clean_pool()

    def broken(k):
        yield None
        raise MemoryError

    monkeypatch.setattr(crypto, "x25519_base_slices", broken)
    rng = Rng()
    try:
        assert crypto.prepare(rng)  # the first slice
        assert not crypto.prepare(rng)  # MemoryError: dropped, no exception
        assert crypto._job == [] and dh.ready(rng) == 0
        assert not crypto.prepare(rng) and rng.calls == 1  # stalled: no new attempt
        monkeypatch.undo()
        kp = dh.KeyPair(CURVE25519, rng)  # a pair is wanted: made now, and the idle work may go on
        assert len(kp.public) == 32
        assert crypto.prepare(rng) and dh.ready(rng) == 1
    finally:
        clean_pool()

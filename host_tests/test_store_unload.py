# qcd.store's split (issue 10 §3): the state and the reads in qcd.store, the
# mount, writes and status() in qcd.records over qcd.log, loaded when they
# run. What only CPython can force: the RAM layout constants the two modules
# share agree, and a map write whose code cannot be loaded (on a board: a
# MemoryError while an unloading store loads it) changes nothing, waits, and
# lands in order at the next write or flush (QcdHook flushes at each
# protected message). The portable test_store_unload.py checks the
# unloading itself, on MicroPython too.
import os
import sys
import types

import pytest

from qcd import records, store
from qcd.hook import MAKER, QcdHook
from qcdhost.emu.flash import BLOCK_SIZE, FlashEmu, MemoryBacking

I1, R1, IP4 = bytes(range(8)), bytes(range(8, 16)), bytes([192, 0, 2, 7])
SIZE = 4 * BLOCK_SIZE


def test_the_constants_qcd_store_shares_with_qcd_records_agree():
    # private (micropython.const) on a device, so each module has its own
    for n in ("_F_INITIATOR", "_F_IPV6", "_GEN_SHIFT", "_AT_IKE", "_I_DEF", "_G_SECRET"):
        assert getattr(store, n) == getattr(records, n), n


class NoMemory:
    """An import finder: loading qcd.records fails as it does on a board
    whose heap has no room for its code."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "qcd.records":
            raise MemoryError("memory allocation failed, allocating 1104 bytes")
        return None


def block(monkeypatch):
    monkeypatch.delitem(sys.modules, "qcd.records", raising=False)
    monkeypatch.delattr(sys.modules["qcd"], "records", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoMemory] + sys.meta_path)


def mounted():
    e = FlashEmu(MemoryBacking(SIZE))
    s = store.Store(e, os.urandom, unload=True)
    s.child_put(1, I1, R1, True, IP4)
    return e, s


def test_map_writes_whose_code_cannot_be_loaded_wait_change_nothing_and_land_in_order(monkeypatch):
    e, s = mounted()
    image = e.backing.read(0, SIZE)
    before = (dict(s._children), repr(s), s.log.writes, s.log.pos)
    block(monkeypatch)
    with pytest.raises(MemoryError):
        s.child_put(2, I1, R1, True, IP4)
    with pytest.raises(MemoryError):
        s.child_drop(1)  # behind the put that waits
    with pytest.raises(MemoryError):
        s.rollover()  # not a map write: the operator sees it fail, nothing waits
    assert len(s.pending) == 2
    assert (dict(s._children), repr(s), s.log.writes, s.log.pos) == before
    assert e.backing.read(0, SIZE) == image
    monkeypatch.undo()
    s.flush()
    assert s.pending == [] and s.child_get(2) == (I1, R1, True, IP4) and s.child_get(1) is None
    s2 = store.Store(e.reboot(), os.urandom)
    assert s2.child_get(2) == (I1, R1, True, IP4) and s2.child_get(1) is None and len(s2.secrets()) == 1


def test_a_waiting_write_is_done_before_the_next_write(monkeypatch):
    e, s = mounted()
    block(monkeypatch)
    with pytest.raises(MemoryError):
        s.child_put(2, I1, R1, True, IP4)
    monkeypatch.undo()
    s.child_put(3, I1, R1, True, IP4)
    assert s.pending == [] and [spi for spi, _ in s.children()] == [1, 2, 3]
    assert [spi for spi, _ in store.Store(e.reboot(), os.urandom).children()] == [1, 2, 3]


def test_the_hook_retries_a_waiting_map_write_at_the_next_protected_message(monkeypatch):
    e, s = mounted()
    lines = []
    hook = QcdHook(role=MAKER, keys=s, log=lines.append)
    sa = types.SimpleNamespace(spi_i=I1, spi_r=R1)
    block(monkeypatch)
    with pytest.raises(MemoryError):
        s.child_put(2, I1, R1, True, IP4)
    hook.protected(sa, 37, [], 0)  # still no memory: counted and logged, still waiting
    assert hook.internal_errors == 1 and lines[-1] == "qcd: internal error in protected: MemoryError" and len(s.pending) == 1
    monkeypatch.undo()
    hook.protected(sa, 37, [], 0)
    assert s.pending == [] and s.child_get(2) == (I1, R1, True, IP4) and lines[-1] == "qcd: postponed map writes done"
    assert store.Store(e.reboot(), os.urandom).child_get(2) == (I1, R1, True, IP4)

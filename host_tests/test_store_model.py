# qcd.store against a model (the in-RAM key source, qcdhost.keys.MemoryKeys):
# hypothesis drives random sequences of map updates, rollovers, retirements
# and reboots on a small partition (so that compaction and eviction happen
# often) and shrinks any sequence after which the store and the model differ.
from qcdhost.emu import flash as flashemu
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from qcdhost.keys import MemoryKeys
from qcd.store import MAX_GENERATIONS, Store
from qcd.tokens import fingerprint

IKE_SAS = [(bytes([i]) * 8, bytes([i + 100]) * 8, i % 2 == 0, bytes([10, 0, 0, i]) if i % 3 else bytes([i]) * 16) for i in range(1, 7)]
CAP = 12


class StoreVsModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.backing = flashemu.MemoryBacking(4 * flashemu.BLOCK_SIZE)
        self.emu = flashemu.FlashEmu(self.backing, encrypted=True)
        self.store = Store(self.emu, lambda n: b"\x07" * n, max_children=CAP)
        self.model = MemoryKeys(self.store.secrets())
        self.order = []  # Child SPIs, oldest write first (eviction order)
        self.boot = 1

    def _put(self, spi, ike):
        if self.model.child_get(spi) == ike:
            self.store.child_put(spi, *ike)  # unchanged: nothing to do
            return
        before = set(s for s, _ in self.store.children())
        self.store.child_put(spi, *ike)
        if spi not in self.model._map and self.model.child_count() >= CAP:
            # At the cap the store evicts the entry written longest ago (the
            # one whose record is in the oldest block); take its word for
            # which, but check it was exactly one, and not the new one.
            gone = before - set(s for s, _ in self.store.children())
            assert len(gone) == 1 and spi not in gone
            self.model.child_drop(gone.pop())
        self.model.child_put(spi, *ike)

    @rule(spi=st.integers(0, 40), ike=st.sampled_from(IKE_SAS))
    def put(self, spi, ike):
        self._put(spi, ike)

    @rule(spi=st.integers(0, 40))
    def drop(self, spi):
        self.store.child_drop(spi)
        self.model.child_drop(spi)

    @precondition(lambda self: len(self.model.secrets()) < MAX_GENERATIONS)
    @rule(seed=st.integers(0, 2**32))
    def rollover(self, seed):
        secret = seed.to_bytes(32, "big")
        if secret in self.model.secrets():
            return
        self.store.rollover(secret)
        self.model.rollover(secret)

    @rule(i=st.integers(0, 3))
    def retire(self, i):
        secrets = self.model.secrets()
        fp = fingerprint(secrets[i % len(secrets)])
        # Both refuse the same ones (the current secret), saying why.
        got = []
        for keys in (self.store, self.model):
            try:
                got.append(keys.retire(fp))
            except ValueError as e:
                got.append(str(e))
        assert got[0] == got[1], got

    @rule()
    def reboot(self):
        self.emu = self.emu.reboot()
        self.store = Store(self.emu, None, max_children=CAP)
        self.boot += 1
        assert self.store.boot_count == self.boot

    @rule(n=st.integers(50, 300))
    def churn(self, n):
        # enough writes to fill blocks and force compaction
        for i in range(n):
            self._put(1000 + i % 5, IKE_SAS[i % len(IKE_SAS)])
        for i in range(5):
            self.store.child_drop(1000 + i)
            self.model.child_drop(1000 + i)

    @invariant()
    def same(self):
        assert self.store.secrets() == self.model.secrets()
        assert dict(self.store.children()) == dict(self.model.children())
        assert self.emu.violations == 0
        assert self.store.status()["damage_count"] == 0


StoreVsModel.TestCase.settings = settings(max_examples=150, stateful_step_count=50, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
test_store_matches_the_in_ram_model = StoreVsModel.TestCase

# Secret rollover against a taker that reads only the first N(QCD) (issue
# 11 §1: Rockhopper compares only the first token of an answer). The device
# is lib/ike + QcdHook on qcd.store over the flash emulator (the flash
# survives the power cut, RAM does not); the gateway is lib/ike with a taker
# written here from the bytes of the messages, which keeps the first token
# it is handed and, on an unprotected message, compares the first N(QCD)
# only. Sans-I/O: the engines exchange datagrams in memory (ike_util.Pair).
import hashlib

from ike_util import Pair, dev_config, gw_config

from qcdhost.emu.flash import BLOCK_SIZE, FlashEmu, MemoryBacking
from ike.engine import Engine
from qcd import hook as qhook
from qcd import store as qstore
from qcd.tokens import fingerprint

QCD = 16419


def first_token(datagram):
    """The data of the first Notify payload of type QCD in an IKE message,
    from the bytes (RFC 7296 §3.1-§3.2, §3.10), or None."""
    if len(datagram) < 28:
        return None
    nxt, pos = datagram[16], 28
    while nxt and pos + 4 <= len(datagram):
        ln = int.from_bytes(datagram[pos + 2 : pos + 4], "big")
        if ln < 4 or pos + ln > len(datagram):
            return None
        if nxt == 41 and ln >= 8 and int.from_bytes(datagram[pos + 6 : pos + 8], "big") == QCD:
            return bytes(datagram[pos + 8 + datagram[pos + 5] : pos + ln])
        nxt, pos = datagram[pos], pos + ln
    return None


class FirstTokenTaker:
    """A QCD taker that keeps the first token handed over for an IKE SA and
    accepts an unprotected message only if its first N(QCD) is that token."""

    def __init__(self):
        self.tokens = {}
        self.seen = []  # (first token of each unprotected message, accepted)

    def _keep(self, sa, notifies):
        for n in notifies:
            if n[0] == QCD:
                self.tokens[bytes(sa.spi_i) + bytes(sa.spi_r)] = bytes(n[-1])
                return

    def protected(self, sa, exchange, notifies, now):
        self._keep(sa, notifies)

    def ike_up(self, sa, notifies, children, now):
        self._keep(sa, notifies)
        return []

    def ike_rekey(self, old, new, notifies, now):
        self._keep(new, notifies)
        return []

    def unprotected(self, msg, src, sa, now):
        # docs/hook.md: the engine's parsed message; its bytes are msg.buf
        tok = first_token(msg.buf)
        ok = tok is not None and tok == self.tokens.get(bytes(msg.buf[0:16]))
        self.seen.append((tok, ok))
        return ok

    def ike_down(self, sa, now):
        self.tokens.pop(bytes(sa.spi_i) + bytes(sa.spi_r), None)


def device(emu):
    st = qstore.mount(emu, rng=lambda n: hashlib.sha256(b"first secret").digest()[:n])
    return qhook.QcdHook(qhook.MAKER, st, rate=None), st


def setup(child_before_reboot=True):
    emu = FlashEmu(MemoryBacking(16 * BLOCK_SIZE))
    dh, st = device(emu)
    gh = FirstTokenTaker()
    p = Pair(dev_config(nat_t="force"), gw_config(), dh, gh)
    d, g = p.up()  # the token handed over is made with the first secret
    spis = g.spis()
    assert gh.tokens[spis[0] + spis[1]]
    first_fp = fingerprint(st.secrets()[0])
    st.rollover(hashlib.sha256(b"second secret").digest())  # the device rolls its secret
    if not child_before_reboot:
        p.dev.delete_child(p.now)  # its only Child SA goes: the map forgets the IKE SA
        p.pump()
        assert st.child_count() == 0
    # Power cut: RAM gone, the flash image stays; the device boots again.
    emu = emu.reboot()
    dh, st = device(emu)
    assert fingerprint(st.secrets()[1]) == first_fp and len(st.secrets()) == 2
    p.dev = Engine(p.dev.cfg, dh, p.dev.rng, None)
    return p, gh, dh, g


def test_the_liveness_answer_leads_with_the_token_the_gateway_holds():
    p, gh, dh, g = setup()
    p.gw.liveness(p.now)
    p.pump()
    assert not p.gw.sas, "the stale SA is still there"
    assert gh.seen == [(gh.seen[0][0], True)]  # one answer, accepted
    assert dh.maker.counters["answered_ike"] == 1 and dh.maker.counters["answered_unknown_gen"] == 0


def test_the_esp_answer_leads_with_the_token_the_gateway_holds():
    # RFC 6290 §8.2: the parent IKE SA and its token's generation from the map.
    p, gh, dh, g = setup()
    p.gw.send_esp(p.now)
    p.pump()
    assert not p.gw.sas and gh.seen[0][1] is True
    assert dh.maker.counters["answered_esp"] == 1


def test_without_the_generation_one_answer_per_candidate_still_reaches_the_taker():
    # No Child SA left in the map: the device cannot know which secret made
    # the gateway's token, and answers once per candidate token.
    p, gh, dh, g = setup(child_before_reboot=False)
    p.gw.liveness(p.now)
    p.pump()
    assert not p.gw.sas
    assert [ok for _, ok in gh.seen] == [False, True]  # the current secret's first, refused; then its own
    assert dh.maker.counters["answered_unknown_gen"] == 1

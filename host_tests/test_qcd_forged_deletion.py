# RFC 6290 §9.2 through the engine: the device never answers unprotected
# (INVALID_IKE_SPI + token) for an IKE SA it holds, in any state, whichever
# SPI the I flag points at (issue 13 §1).
#
# The attack: an off-path attacker who saw the plaintext SPIs of a tunnel
# sends the device a protected-looking request for them, possibly with the I
# flag flipped so that the engine's lookup misses; if the device answers with
# INVALID_IKE_SPI and a valid token, the attacker flips the flag back and
# hands the answer to the gateway, which deletes the SA while the device
# thinks the tunnel is up. Each window below stops a real exchange between a
# device engine (QCD maker) and a gateway engine (QCD taker) at one moment by
# holding back datagrams, then plays the attacker with packets built from
# bytes here (not through qcd.wire or ike.message, the code under test).
import struct

import pytest
from ike_util import DEV_ADDR, GW_ADDR, Pair, dev_config, gw_config

from ike import state
from ike.engine import NON_ESP_MARKER
from qcd import hook as qhook
from qcdhost.keys import MemoryKeys
from qcd.tokens import STYLE_ADDR, STYLE_SPIS

SECRET = bytes(range(32))
ATTACKER = "198.51.100.66"
FLAG_I, FLAG_R = 0x08, 0x20
IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL = 35, 36, 37
PT_SK = 46


def forged_request(spi_i, spi_r, exchange, flags, msg_id):
    """HDR, SK{...} with 48 octets of 'ciphertext': the frame of a protected
    request, as an attacker without keys can make it (RFC 7296 §3.1, §3.14)."""
    body = bytes((0x5A + i) & 0xFF for i in range(48))
    sk = struct.pack(">BBH", 0, 0, 4 + len(body)) + body
    total = 28 + len(sk)
    return spi_i + spi_r + struct.pack(">BBBBII", PT_SK, 0x20, exchange, flags, msg_id, total) + sk


def _ike(data):
    """The IKE message in a datagram as the pair sends it (marker stripped)."""
    return data[4:] if data[:4] == NON_ESP_MARKER else data


def _hdr(data):
    m = _ike(data)
    if len(m) < 28:
        return None
    return m[18], m[19]  # exchange, flags


def responder_config(**kw):
    """The device in the responder role: dev_config() without what only an
    initiator has."""
    d = dev_config(role="responder", **kw)
    del d["peer"], d["start_delay_s"]
    return d


def initiator_gw_config(**kw):
    """The gateway in the initiator role, started by initiate()."""
    return gw_config(role="initiator", peer={"addr": DEV_ADDR, "port": 500, "natt_port": 4500}, start_delay_s=None, **kw)


class Setup:
    """A device (maker) and a gateway (taker); `role` is the device's role
    in the IKE SA (who sent IKE_SA_INIT)."""

    def __init__(self, role, style, restrict):
        self.role = role
        self.keys = MemoryKeys([SECRET])
        st = STYLE_SPIS if style == "5.1" else STYLE_ADDR
        self.dh = qhook.QcdHook(qhook.MAKER, self.keys, st, rate=None)
        self.gh = qhook.QcdHook(qhook.TAKER, restrict_to_peer=restrict)
        if role == "initiator":
            self.p = Pair(dev_config(nat_t="force"), gw_config(), self.dh, self.gh)
            self.first = self.p.dev
        else:
            self.p = Pair(responder_config(), initiator_gw_config(nat_t="force"), self.dh, self.gh)
            self.first = self.p.gw
        self.held = []

    def hold(self, who, exchange, response=None, count=1):
        """Hold back the next `count` datagrams `who` sends of `exchange`
        (request or response, or either when None)."""
        want = [count]

        def drop(data, name):
            h = _hdr(data)
            if name != who or h is None or h[0] != exchange or want[0] <= 0:
                return False
            if response is not None and bool(h[1] & FLAG_R) != response:
                return False
            want[0] -= 1
            self.held.append((name, data))
            return True

        self.p.drop = drop

    def release(self):
        self.p.drop = None

    def up(self):
        self.first.initiate(self.p.now)
        self.p.pump()
        assert self.p.sa("dev") is not None and self.p.sa("gw") is not None

    def gw_alive(self):
        """SPI pairs of the gateway's SAs a verified token would delete."""
        return {(s.spi_i, s.spi_r) for s in self.p.gw.sas.values() if s.reported}

    def attack(self):
        """Every pair either side holds, every flag, three exchanges, both
        ports. Returns (answers the device sent the attacker, forged
        deletions at the gateway)."""
        p = self.p
        pairs = set()
        for eng in (p.dev, p.gw):
            for s in eng.sas.values():
                if s.spi_r != bytes(8):
                    pairs.add((s.spi_i, s.spi_r))
        assert pairs
        before = self.gw_alive()
        verified0 = self.gh.taker.counters["verified"]
        answers = []
        for spi_i, spi_r in sorted(pairs):
            for flags in (FLAG_I, 0):
                for ex in (IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL):
                    for msg_id in (0, 1, 2, 7):
                        pkt = forged_request(spi_i, spi_r, ex, flags, msg_id)
                        # From the attacker's address, and from the
                        # gateway's (spoofed: the answer then goes to the
                        # gateway itself, and a §5.2 token is bound to it).
                        for src in (ATTACKER, GW_ADDR):
                            p.dev.receive(pkt, (src, 500), False, p.now)
                            p.dev.receive(NON_ESP_MARKER + pkt, (src, 4500), True, p.now)
                        for data, dst, natt in p.dev.take_datagrams():
                            answers.append((data, natt))
        # The attacker's second step: each answer to the gateway, from the
        # device's address (spoofed), with the I flag either way.
        for data, natt in answers:
            msg = bytearray(_ike(data))
            for flags in (msg[19] | FLAG_I, msg[19] & ~FLAG_I):
                msg[19] = flags
                for port, nt in ((500, False), (4500, True)):
                    p.gw.receive((NON_ESP_MARKER if nt else b"") + bytes(msg), (DEV_ADDR, port), nt, p.now)
            p.gw.take_datagrams()
        deleted = before - self.gw_alive()
        assert len(deleted) == self.gh.taker.counters["verified"] - verified0
        return len(answers), len(deleted)


def _check(s):
    answers, deleted = s.attack()
    assert (answers, deleted) == (0, 0)
    assert s.dh.maker.counters["answered_ike"] == 0


# -- the windows ---------------------------------------------------------------
#
# One row per window: whether the SA comes up first, whose datagrams of
# which exchange are held back (a sender per device role when it depends on
# who initiated), what starts the exchange, and what must hold once it
# stopped there. Each row runs for both roles, both token styles, with and
# without restrict_to_peer.

ROLES = ("initiator", "responder")
STYLES = ("5.1", "5.2")
RESTRICT = (False, True)
BY_ROLE = {"initiator": 0, "responder": 1}


def _start(s):
    s.first.initiate(s.p.now)


def _gw_rekey(s):
    s.p.gw.rekey_ike(s.p.now)


def _dev_rekey(s):
    s.p.dev.rekey_ike(s.p.now)


def _dev_delete(s):
    s.p.dev.delete_ike(s.p.now)


def _states(s):
    return [x.state for x in s.p.dev.sas.values()]


def _half_open(s):
    dsa = list(s.p.dev.sas.values())
    return len(dsa) == 1 and dsa[0].state in (state.AUTH_SENT, state.INIT_DONE)


class Window:
    def __init__(self, name, up, hold, exchange, response, action, holds=None):
        self.name = name
        self.up = up  # the SA comes up before the window opens
        self.hold = hold  # who sends the held datagrams: a name, or (as initiator, as responder)
        self.exchange = exchange
        self.response = response
        self.action = action
        self.holds = holds  # what must be true once the window is open (None: nothing to check)

    def sender(self, role):
        return self.hold if isinstance(self.hold, str) else self.hold[BY_ROLE[role]]


WINDOWS = [
    # IKE_SA_INIT done, IKE_AUTH not yet sent (initiator) or received
    # (responder): the device holds the SPI pair, nothing is up anywhere.
    Window("half_open_sa", False, ("dev", "gw"), IKE_AUTH, False, _start, _half_open),
    # The device's IKE_SA_INIT went out (initiator) and the gateway's answer
    # is in flight: the device knows only its own SPI, the gateway holds the
    # pair. An answer now would be a token the gateway accepts once the SA
    # comes up. As responder: the device answered IKE_SA_INIT, the answer is
    # in flight.
    Window("ike_sa_init_sent_for_its_spi", False, ("gw", "dev"), 34, True, _start),
    # The peer that receives the last IKE_AUTH message has the SA up and the
    # token (when the device responds, the token rides in the response that
    # is held back here); the initiator's row is the case.
    Window("ike_auth_in_flight", False, ("gw", "dev"), IKE_AUTH, True, _start, lambda s: s.p.sa("gw" if s.role == "initiator" else "dev") is not None),
    # The device answered the gateway's IKE SA rekey; the gateway has not
    # read the answer and still uses the old SA with the old token.
    Window("rekey_by_the_gateway_either_sa", True, "dev", CREATE_CHILD_SA, True, _gw_rekey, lambda s: len(s.p.dev.sas) == 2 and bool(s.gw_alive())),
    # The device asked for the rekey; the gateway's answer (the new SA) is in
    # flight, and the gateway may already use the new SA.
    Window("rekey_by_the_device_either_sa", True, "gw", CREATE_CHILD_SA, True, _dev_rekey, lambda s: len(s.p.gw.sas) == 2),
    # Rekey done on both sides; the gateway's Delete of the old SA is in
    # flight, so the device still holds the old SA (REKEYED) for the linger
    # time.
    Window("replaced_sa_lingering_after_a_gateway_rekey", True, "gw", INFORMATIONAL, False, _gw_rekey, lambda s: state.REKEYED in _states(s)),
    # The device rekeyed and sent the Delete of the old SA; the gateway's
    # answer is in flight (delete in flight, old SA DELETING on the device).
    Window("replaced_sa_deleted_by_the_device_until_gone", True, "gw", INFORMATIONAL, True, _dev_rekey, lambda s: state.DELETING in _states(s)),
    Window("delete_in_flight", True, "gw", INFORMATIONAL, True, _dev_delete, lambda s: _states(s) == [state.DELETING]),
    Window("established_sa", True, None, None, None, None),
]


@pytest.mark.parametrize("role,style,restrict", [(r, st, x) for r in ROLES for st in STYLES for x in RESTRICT])
@pytest.mark.parametrize("window", WINDOWS, ids=[w.name for w in WINDOWS])
def test_an_sa_the_device_holds_is_never_answered_unprotected(window, role, style, restrict):
    s = Setup(role, style, restrict)
    if window.up:
        s.up()
    if window.action is not None:
        s.hold(window.sender(role), window.exchange, response=window.response, count=99)
        window.action(s)
        s.p.pump()
    if window.holds is not None:
        assert window.holds(s), "the exchange did not stop in the window %r" % window.name
    _check(s)


@pytest.mark.parametrize("role", ROLES)
def test_a_stale_sa_is_still_answered_after_a_reboot(role):
    # The rule costs QCD nothing: once the device lost the SA (a reboot), the
    # same forged-looking request (here the gateway's own liveness check) is
    # answered and the gateway deletes the dead SA.
    s = Setup(role, "5.1", False)
    s.up()
    s.dh = qhook.QcdHook(qhook.MAKER, s.keys, STYLE_SPIS, rate=None)
    s.p.dev = type(s.p.dev)(s.p.dev.cfg, s.dh, s.p.dev.rng, None)
    s.p.gw.liveness(s.p.now)
    s.p.pump()
    assert not s.p.gw.sas and s.gh.taker.counters["verified"] == 1

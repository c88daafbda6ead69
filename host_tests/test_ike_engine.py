# ike.engine, sans-I/O: two engines on a simulated network (ike_util.Pair)
# with a simulated clock. Exchanges, retransmission and give-up, Message ID
# windows, collisions, NAT-T, the hook's points, and bad input.
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ike_util import Pair, dev_config, gw_config
from support import run_fresh

from ike import message, payloads, state
from ike.const import (
    AUTHENTICATION_FAILED,
    CURVE25519,
    COOKIE,
    CREATE_CHILD_SA,
    FLAG_I,
    FLAG_R,
    IKE_AUTH,
    INFORMATIONAL,
    INVALID_KE_PAYLOAD,
    INVALID_SYNTAX,
    MODP_2048,
    MODP_3072,
    PT_N,
    PT_V,
    UNSUPPORTED_CRITICAL_PAYLOAD,
)
from ike.engine import NON_ESP_MARKER, Engine


def notifies_in(data):
    """Notify types of an unprotected datagram (marker stripped)."""
    if data[:4] == NON_ESP_MARKER:
        data = data[4:]
    m = message.parse(data)
    return [n[0] for n in payloads.notifies(m.bodies())]


def snapshot(eng):
    """Everything a datagram must not change when it is to be ignored."""
    out = []
    for spi, sa in sorted(eng.sas.items()):
        out.append((spi, sa.spi_i, sa.spi_r, sa.state, sa.my_msg_id, sa.peer_msg_id, sa.peer, sa.request and sa.request.msg_id, [(c.spi_in, c.state, c.replay.top if c.replay else None) for c in sa.children]))
    return out


class Recorder:
    """A notify hook that records every call and answers as told."""

    def __init__(self, unknown_answer=None, verdict=False, esp_answer=None, raise_all=False):
        self.calls = []
        self.unknown_answer = unknown_answer
        self.verdict = verdict
        self.esp_answer = esp_answer
        self.raise_all = raise_all

    def _rec(self, *a):
        self.calls.append(a)
        if self.raise_all:
            raise RuntimeError("hook bug")

    TOKEN = [(16419, 1, b"T" * 32)]

    def auth_request(self, sa, now):
        self._rec("auth_request", sa.spi_i, sa.spi_r, sa.initiator, sa.peer)
        return self.TOKEN

    def rekey_response(self, sa, now):
        self._rec("rekey_response", sa.spi_i, sa.spi_r)
        return self.TOKEN

    def protected(self, sa, exchange, notifies, now):
        self._rec("protected", exchange, sa.spi_i, sa.spi_r, [(n[0], n[1], n[-1]) for n in notifies])

    def unknown_ike_spi(self, msg, src, now):
        self._rec("unknown_ike_spi", msg, src)
        return self.unknown_answer

    def unprotected(self, msg, src, sa, now):
        self._rec("unprotected", msg, src, sa.peer)
        return self.verdict

    def unknown_esp_spi(self, packet, src, now):
        self._rec("unknown_esp_spi", packet, src)
        return self.esp_answer

    def ike_created(self, sa, now):
        self._rec("ike_created", sa.spi_i if sa.initiator else sa.spi_r, sa)

    def ike_up(self, sa, notifies, children, now):
        self._rec("ike_up", sa.spi_i, sa.spi_r, sa.initiator, [(n[0], n[1], n[-1]) for n in notifies], list(children))
        return [] if sa.initiator else self.TOKEN

    def ike_rekey(self, old, new, notifies, now):
        self._rec("ike_rekey", (old.spi_i, old.spi_r), (new.spi_i, new.spi_r), new.initiator, [(n[0], n[1], n[-1]) for n in notifies])
        return self.TOKEN if new.initiator else []

    def ike_down(self, sa, now):
        self._rec("ike_down", sa.spi_i if sa.initiator else sa.spi_r, sa)

    def child_up(self, sa, spi_in, now):
        self._rec("child_up", spi_in, sa.spi_i, sa.spi_r)

    def child_down(self, sa, spi_in, now):
        self._rec("child_down", spi_in, sa.spi_i, sa.spi_r)

    def named(self, name):
        return [c for c in self.calls if c[0] == name]


def no_bugs(p):
    for e in (p.dev, p.gw):
        assert e.counters["internal_errors"] == 0


# -- establishing ------------------------------------------------------------------


def test_handshake_gives_both_ends_the_same_sa_and_mirrored_child_keys():
    p = Pair()
    d, g = p.up()
    assert d.state == g.state == state.ESTABLISHED
    assert d.spis() == g.spis() and d.initiator and not g.initiator
    assert [x[0] for x in p.wire] == ["dev", "gw", "dev", "gw"]
    dc, gc = d.children[0], g.children[0]
    assert (dc.spi_in, dc.spi_out) == (gc.spi_out, gc.spi_in)
    assert dc.keys[0:2] == gc.keys[2:4] and dc.keys[2:4] == gc.keys[0:2]
    assert len(set(dc.keys)) == 4
    assert p.names("dev")[-2:] == ["ike_up", "child_up"] and p.names("gw") == ["ike_up", "child_up"]
    up = [e for e in p.events["dev"] if e[0] == "child_up"][0][1]
    assert up["keys"] == dc.keys  # handed to whoever installs the Child SA
    no_bugs(p)


def test_without_nat_everything_stays_on_the_ike_port():
    p = Pair()
    p.up()
    assert not [w for w in p.wire if w[3]]


def test_forced_nat_t_moves_ike_auth_to_the_natt_port_with_the_marker():
    p = Pair(dev_config(nat_t="force"))
    d, g = p.up()
    assert [w[3] for w in p.wire] == [False, False, True, True]
    assert all(w[1][:4] == NON_ESP_MARKER for w in p.wire[2:])
    assert d.natt and g.natt and d.nat_detected and g.nat_detected


def test_nat_t_always_starts_on_the_natt_port():
    p = Pair(dev_config(nat_t="always"))
    p.up()
    assert all(w[3] for w in p.wire)


def test_responder_demands_a_cookie_when_busy_and_keeps_no_state():
    p = Pair(gw=gw_config(cookie_threshold=0))
    d, g = p.up()
    assert d is not None and g is not None
    first_answer = p.wire[1]
    assert notifies_in(first_answer[1]) == [COOKIE]
    retry = message.parse(p.wire[2][1])
    assert retry.payloads[0][0] == PT_N and payloads.decode_notify(retry.bodies()[0][2])[0] == COOKIE
    assert len(p.gw.sas) == 1


def test_wrong_cookie_gets_another_cookie_answer_not_state():
    p = Pair(gw=gw_config(cookie_threshold=0))
    p.dev.initiate(0)
    req = p.dev.take_datagrams()[0][0]
    p.gw.receive(req, ("192.0.2.2", 500), False, 0)
    ans = p.gw.take_datagrams()[0][0]
    assert notifies_in(ans) == [COOKIE] and not p.gw.sas


def test_invalid_ke_payload_makes_the_initiator_retry_with_the_chosen_group():
    p = Pair(dev_config(dh_groups=[MODP_3072, MODP_2048]), gw_config(dh_groups=[MODP_2048]))
    d, g = p.up()
    assert notifies_in(p.wire[1][1]) == [INVALID_KE_PAYLOAD]
    assert d.group == g.group == MODP_2048
    assert payloads.decode_ke(payloads.first(message.parse(p.wire[2][1]).bodies(), 34))[0] == MODP_2048


def test_curve25519_is_proposed_first_and_used_by_default():
    p = Pair()
    d, g = p.up()
    assert d.group == g.group == CURVE25519
    init = message.parse(p.wire[0][1]).bodies()
    ke = payloads.decode_ke(payloads.first(init, 34))
    assert ke[0] == CURVE25519 and len(ke[1]) == 32  # RFC 8031 §2.1
    props = payloads.decode_sa(payloads.first(init, 33))
    groups = [t[1] for t in props[0][3] if t[0] == 4]
    assert groups == [CURVE25519, MODP_2048]  # MODP-2048 kept as the fallback


def test_peer_offering_only_modp2048_still_works_as_responder_and_initiator():
    # Our initiator leads with 31; a responder with 14 only answers
    # INVALID_KE_PAYLOAD and we retry with 14.
    p = Pair(gw=gw_config(dh_groups=[MODP_2048]))
    d, g = p.up()
    assert notifies_in(p.wire[1][1]) == [INVALID_KE_PAYLOAD]
    assert d.group == g.group == MODP_2048
    # An initiator that offers only 14 gets 14 from our responder, directly.
    p = Pair(dev_config(dh_groups=[MODP_2048]))
    d, g = p.up()
    assert d.group == g.group == MODP_2048
    assert INVALID_KE_PAYLOAD not in notifies_in(p.wire[1][1])


def test_x25519_key_exchange_with_a_low_order_point_is_refused():
    # RFC 8031 §2.2: an all-zero shared secret aborts the exchange; the
    # responder answers INVALID_SYNTAX and keeps no state.
    p = Pair()
    p.dev.initiate(0)
    req = bytearray(p.dev.take_datagrams()[0][0])
    m = message.parse(bytes(req))
    ke = payloads.decode_ke(payloads.first(m.bodies(), 34))
    i = bytes(req).find(ke[1])
    req[i : i + 32] = bytes(32)  # u = 0
    p.gw.receive(bytes(req), ("192.0.2.2", 500), False, 0)
    assert not p.gw.sas
    assert notifies_in(p.gw.take_datagrams()[0][0]) == [INVALID_SYNTAX]


def test_no_common_group_fails_cleanly():
    p = Pair(dev_config(dh_groups=[MODP_2048]), gw_config(dh_groups=[MODP_3072]))
    d, g = p.up()
    assert d is None and g is None and not p.dev.sas and not p.gw.sas
    assert "ike_failed" in p.names("dev")
    no_bugs(p)


def test_wrong_psk_fails_on_both_sides():
    p = Pair(gw=gw_config(psk="another-pre-shared-key"))
    d, g = p.up()
    assert d is None and g is None and not p.dev.sas and not p.gw.sas
    dev_failed = [e for e in p.events["dev"] if e[0] == "ike_failed"][0][1]
    assert "AUTHENTICATION_FAILED" in dev_failed["reason"]


def test_unexpected_peer_identity_is_refused():
    p = Pair(gw=gw_config(id_peer="other.example"))
    assert p.up() == (None, None)


def test_responder_identity_is_checked_by_the_initiator():
    p = Pair(dev_config(id_peer="other.example"))
    d, g = p.up()
    assert d is None and not p.dev.sas
    assert "authentication of the peer failed" in [e for e in p.events["dev"] if e[0] == "ike_failed"][0][1]["reason"]


def test_disjoint_traffic_selectors_give_an_ike_sa_without_child():
    p = Pair(gw=gw_config(ts_peer=["10.9.0.0/24"]))
    d, g = p.up()
    assert d and g and not d.children and not g.children
    assert "child_failed" in p.names("dev")


def test_responder_narrows_traffic_selectors():
    p = Pair(dev_config(ts_local=["10.2.0.0/16"]))
    d, g = p.up()
    assert d.children[0].ts_local == g.children[0].ts_peer
    assert d.children[0].ts_local[0][4:] == (bytes([10, 2, 0, 0]), bytes([10, 2, 0, 255]))


def test_retransmitted_ike_sa_init_gets_the_same_response():
    p = Pair()
    p.dev.initiate(0)
    req = p.dev.take_datagrams()[0][0]
    p.gw.receive(req, ("192.0.2.2", 500), False, 0)
    p.gw.receive(req, ("192.0.2.2", 500), False, 10)
    a, b = p.gw.take_datagrams()
    assert a[0] == b[0] and len(p.gw.sas) == 1


# -- retransmission ----------------------------------------------------------------


def test_lost_messages_are_retransmitted_and_answered_from_the_cache():
    p = Pair()
    lost = []

    def drop(data, who):
        # the first IKE_AUTH request and the first IKE_AUTH response are lost
        m = message.parse(data)
        if m is not None and m.exchange == IKE_AUTH and (who, m.is_response()) not in lost:
            lost.append((who, m.is_response()))
            return True
        return False

    p.drop = drop
    p.dev.initiate(0)
    p.pump()
    p.advance(20000)
    assert p.sa("dev") and p.sa("gw")
    assert p.dev.counters["retransmitted"] == 2
    assert p.gw.counters["answered_retransmit"] == 1


def test_initiator_gives_up_on_strongswans_default_schedule():
    p = Pair()
    p.up()
    p.drop = lambda data, who: True  # the gateway is gone
    p.dev.liveness(p.now)
    p.pump()
    sent = []
    start = p.now
    while p.sa("dev") is not None and p.now - start < 400000:
        n = len(p.wire)
        p.advance(100)
        if len(p.wire) > n:
            sent.append(p.now - start)
    # RFC 7296 §2.4 + strongSwan's defaults: retransmit after 4, 4*1.8, ...
    # 5 retransmissions, give up after 4 * (1 + 1.8 + ... + 1.8^5) = 165.1 s
    assert sent == [4000, 11200, 24200, 47500, 89500]
    assert p.sa("dev") is None and 165100 <= p.now - start <= 165300
    down = [e for e in p.events["dev"] if e[0] == "ike_down"][0][1]
    assert "did not answer" in down["reason"]


def test_retransmission_settings_come_from_the_config():
    p = Pair(dev_config(retransmit={"timeout_s": 0.5, "base": 2, "tries": 2}))
    p.drop = lambda data, who: True
    p.dev.initiate(0)
    p.pump()
    p.advance(10000)
    assert len(p.wire) == 3  # request + 2 retransmissions
    assert not p.dev.sas and "ike_failed" in p.names("dev")


def test_reinitiate_after_the_sa_is_lost():
    p = Pair(dev_config(reinitiate_s=5, retransmit={"timeout_s": 1, "base": 1, "tries": 1}))
    p.up()
    blackhole = [True]
    p.drop = lambda data, who: blackhole[0]
    p.dev.liveness(p.now)
    p.pump()
    p.advance(2500)
    assert p.sa("dev") is None
    blackhole[0] = False
    p.advance(6000)
    assert p.sa("dev") is not None


# -- Message IDs -------------------------------------------------------------------


def test_a_retransmitted_request_gets_the_identical_response():
    p = Pair()
    p.up()
    p.dev.liveness(p.now)
    req = p.dev.take_datagrams()[0][0]
    p.gw.receive(req, ("192.0.2.2", 500), False, p.now)
    p.gw.receive(req, ("192.0.2.2", 500), False, p.now)
    a, b = p.gw.take_datagrams()
    assert a[0] == b[0]


def test_old_requests_and_unexpected_responses_are_dropped():
    p = Pair()
    p.up()
    p.dev.liveness(p.now)
    p.pump()
    first_liveness = [w[1] for w in p.wire if w[0] == "dev"][-1]
    p.dev.liveness(p.now)
    p.pump()
    before = snapshot(p.gw), snapshot(p.dev)
    p.gw.receive(first_liveness, ("192.0.2.2", 500), False, p.now)  # replay, older than the window
    resp = [w[1] for w in p.wire if w[0] == "gw"][-1]
    p.dev.receive(resp, ("192.0.2.1", 500), False, p.now)  # a response nobody waits for
    assert p.gw.take_datagrams() == [] and p.dev.take_datagrams() == []
    assert (snapshot(p.gw), snapshot(p.dev)) == before
    assert p.gw.counters["dropped_msg_id"] == 1 and p.dev.counters["dropped_unexpected"] == 1


@pytest.mark.parametrize("case", ["ike_auth_on_an_established_sa", "create_child_sa_on_an_sa_being_deleted"])
def test_a_request_the_state_table_forbids_is_dropped_and_counted(case):
    # A ProtocolError caused by the peer's message (ike.state refuses the
    # request in this state) is a dropped message, counted dropped_protocol:
    # no answer, no state change, no hook call, not an internal error.
    dh, gh = Recorder(), Recorder()
    p = Pair(dev_hook=dh, gw_hook=gh)
    d, g = p.up()
    if case == "ike_auth_on_an_established_sa":
        target, rec, sender, sa, exchange = p.gw, gh, p.dev, d, IKE_AUTH
    else:
        p.dev.delete_ike(p.now)  # DELETING; the Delete is not delivered
        p.dev.take_datagrams()
        assert d.state == state.DELETING
        target, rec, sender, sa, exchange = p.dev, dh, p.gw, g, CREATE_CHILD_SA
    token = [(PT_N, payloads.encode_notify(16419, b"T" * 32, 1))]
    msg = sender.protect(sa, exchange, FLAG_I if sa.initiator else 0, sa.my_msg_id, token)
    before = snapshot(target)
    calls = len(rec.calls)
    target.receive(msg, (p.addr["dev" if sender is p.dev else "gw"], 500), False, p.now)
    assert target.counters["dropped_protocol"] == 1
    assert target.take_datagrams() == [] and snapshot(target) == before
    assert rec.calls[calls:] == []
    assert [line for line in p.logs if "not allowed in" in line]
    no_bugs(p)


# -- INFORMATIONAL -----------------------------------------------------------------


def test_liveness_checks_both_ways():
    p = Pair()
    p.up()
    assert p.dev.liveness(p.now) and p.gw.liveness(p.now)
    p.pump()
    assert "liveness" in p.names("dev") and "liveness" in p.names("gw")


def test_dpd_timer_checks_an_idle_peer():
    p = Pair(gw=gw_config(dpd_s=10))
    p.up()
    n = len(p.wire)
    p.advance(9000)
    assert len(p.wire) == n
    p.advance(2000)
    assert [w[0] for w in p.wire[n:]] == ["gw", "dev"]


def test_deletes_from_either_side():
    p = Pair()
    p.up()
    assert p.dev.delete_child(p.now)
    p.pump()
    assert not p.sa("dev").children and not p.sa("gw").children
    assert p.gw.delete_ike(p.now)
    p.pump()
    assert not p.dev.sas and not p.gw.sas
    assert "ike_down" in p.names("dev") and "child_down" in p.names("gw")


def test_simultaneous_ike_deletes_end_both():
    p = Pair()
    p.up()
    p.dev.delete_ike(p.now)
    p.gw.delete_ike(p.now)
    p.pump()
    assert not p.dev.sas and not p.gw.sas
    no_bugs(p)


# -- CREATE_CHILD_SA -----------------------------------------------------------------


@pytest.mark.parametrize("who", ["dev", "gw"])
def test_child_sa_rekey_by_either_side(who):
    p = Pair()
    d, g = p.up()
    old = d.children[0].spi_in
    assert p.engine(who).rekey_child(p.now)
    p.pump()
    assert len(d.children) == 1 and len(g.children) == 1
    assert d.children[0].spi_in != old and d.children[0].spi_out == g.children[0].spi_in
    assert old not in p.dev.children


def test_esp_goes_out_on_the_old_child_sa_while_its_rekey_is_outstanding():
    # RFC 7296 §2.8: the old SA carries the traffic until its successor is
    # up. (The demo's gateway keeps sending while its rekey waits for a
    # rebooted device; that ESP brings the device's §8.2 QCD answer.)
    p = Pair(dev_config(nat_t="force"))
    d, g = p.up()
    old = g.children[0]
    assert p.gw.rekey_child(p.now)
    assert old.state == "REKEYING"
    pkt = p.gw.send_esp(p.now)
    assert pkt is not None and int.from_bytes(pkt[:4], "big") == old.spi_out
    p.pump()
    assert [e for e in p.events["dev"] if e[0] == "esp"] and p.dev.counters["dropped_esp"] == 0
    assert len(g.children) == 1 and g.children[0].spi_in != old.spi_in
    no_bugs(p)


@pytest.mark.parametrize("who", ["dev", "gw"])
def test_ike_sa_rekey_by_either_side_moves_the_child(who):
    p = Pair()
    d, g = p.up()
    child = d.children[0]
    assert p.engine(who).rekey_ike(p.now)
    p.pump()
    d2, g2 = p.sa("dev"), p.sa("gw")
    assert d2.spis() == g2.spis() != d.spis()
    assert len(p.dev.sas) == len(p.gw.sas) == 1
    assert d2.children == [child]
    assert d2.initiator == (who == "dev") and g2.initiator == (who == "gw")
    # the new SA works: a liveness check both ways
    p.dev.liveness(p.now)
    p.gw.liveness(p.now)
    p.pump()
    assert p.names("dev").count("liveness") == 1 and p.names("gw").count("liveness") == 1


@pytest.mark.parametrize("seed", range(6))
def test_simultaneous_child_rekeys_leave_one_child_sa(seed):
    p = Pair(seed=seed)
    d, g = p.up()
    p.dev.rekey_child(p.now)
    p.gw.rekey_child(p.now)
    p.pump()
    assert len(d.children) == 1 and len(g.children) == 1
    assert d.children[0].spi_out == g.children[0].spi_in and d.children[0].spi_in == g.children[0].spi_out
    assert d.children[0].keys[0:2] == g.children[0].keys[2:4]
    assert d.children[0].state == g.children[0].state == state.INSTALLED
    assert len(p.dev.children) == len(p.gw.children) == 1
    no_bugs(p)


@pytest.mark.parametrize("seed", range(6))
def test_simultaneous_ike_rekeys_leave_one_ike_sa(seed):
    p = Pair(seed=seed)
    p.up()
    p.dev.rekey_ike(p.now)
    p.gw.rekey_ike(p.now)
    p.pump()
    assert len(p.dev.sas) == len(p.gw.sas) == 1
    d, g = p.sa("dev"), p.sa("gw")
    assert d.spis() == g.spis() and len(d.children) == len(g.children) == 1
    p.dev.liveness(p.now)
    p.pump()
    assert "liveness" in p.names("dev")
    no_bugs(p)


def test_request_for_an_additional_child_sa_is_declined():
    p = Pair()
    d, g = p.up()
    from ike import proposals
    from ike.const import CREATE_CHILD_SA, NO_ADDITIONAL_SAS, PT_NONCE, PT_SA

    pls = [(PT_SA, payloads.encode_sa(proposals.esp_offer(b"\x00\x00\x10\x00"))), (PT_NONCE, b"n" * 32)]
    p.dev.send_request(d, "probe", CREATE_CHILD_SA, pls, None, p.now)
    out = p.dev.take_datagrams()[0][0]
    p.gw.receive(out, ("192.0.2.2", 500), False, p.now)
    resp = message.parse(p.gw.take_datagrams()[0][0])
    inner = message.decrypt_sk(resp, *d.keys.inbound(True))
    assert [n[0] for n in payloads.notifies(inner)] == [NO_ADDITIONAL_SAS]


# -- the hook ----------------------------------------------------------------------


def test_hook_methods_per_event_in_order():
    dh, gh = Recorder(), Recorder()
    p = Pair(dev_hook=dh, gw_hook=gh)
    d, g = p.up()
    assert dh.named("auth_request")[0][1:] == (d.spi_i, d.spi_r, True, ("192.0.2.1", 500))
    # one call for the completed IKE_AUTH on each side: the peer's notifies
    # (the token went through SK and reached the other hook) and the Child SA
    up = gh.named("ike_up")[0]
    assert up[1:4] == (g.spi_i, g.spi_r, False) and (16419, 1, b"T" * 32) in up[4] and up[5] == [g.children[0].spi_in]
    up = dh.named("ike_up")[0]
    assert up[1:4] == (d.spi_i, d.spi_r, True) and (16419, 1, b"T" * 32) in up[4] and up[5] == [d.children[0].spi_in]
    assert not dh.named("child_up") and not dh.named("protected") and not gh.named("protected")
    p.gw.rekey_ike(p.now)
    p.pump()
    new = p.sa("gw")
    # the gateway initiated: ike_rekey gets the device's response notifies
    # and returns what goes in the INFORMATIONAL on the new SA
    ev = gh.named("ike_rekey")[0]
    assert ev[1:4] == ((g.spi_i, g.spi_r), (new.spi_i, new.spi_r), True) and (16419, 1, b"T" * 32) in ev[4]
    assert [c for c in dh.named("protected") if c[1] == 37 and c[2:4] == (new.spi_i, new.spi_r) and (16419, 1, b"T" * 32) in c[4]]
    ev = dh.named("ike_rekey")[0]
    assert ev[1:4] == ((d.spi_i, d.spi_r), (new.spi_i, new.spi_r), False)
    # the device (rekey responder) put its notifies in the CREATE_CHILD_SA response
    assert dh.named("rekey_response")[0][1:] == (new.spi_i, new.spi_r)
    # the Child SAs move with ike_rekey: no per-child calls
    assert not dh.named("child_up") and not dh.named("child_down")
    p.dev.rekey_child(p.now)
    p.pump()
    assert len(dh.named("child_up")) == 1 and len(dh.named("child_down")) == 1


def test_the_hook_hears_each_protocol_event_once():
    # docs/hook.md: one method per event, no event entering the hook
    # several times (issue 9 §1). Calls per datagram received.
    dh, gh = Recorder(), Recorder()
    p = Pair(dev_hook=dh, gw_hook=gh)
    seen = []

    def deliver():
        for _ in range(20):
            moved = False
            for name, other in (("dev", "gw"), ("gw", "dev")):
                rec = dh if other == "dev" else gh
                for data, _to, natt in p.engine(name).take_datagrams():
                    moved = True
                    n = len(rec.calls)
                    p.engine(other).receive(data, (p.addr[name], 4500 if natt else 500), natt, p.now)
                    raw = data[4:] if natt else data
                    seen.append((other, raw[18], bool(raw[19] & FLAG_R), tuple(c[0] for c in rec.calls[n:])))
            if not moved:
                return

    def calls(who, exchange, response):
        return [s[3] for s in seen if s[0] == who and s[1] == exchange and s[2] == response]

    p.dev.initiate(p.now)
    deliver()
    assert calls("dev", IKE_AUTH, True) == [("ike_up",)]
    assert calls("gw", IKE_AUTH, False) == [("ike_up",)]
    del seen[:]
    p.gw.rekey_ike(p.now)
    deliver()
    assert calls("gw", 36, True) == [("ike_rekey",)]
    assert calls("dev", 36, False) == [("ike_created", "rekey_response", "ike_rekey")]
    assert ("ike_down",) in calls("dev", INFORMATIONAL, False) and ("ike_down",) in calls("gw", INFORMATIONAL, True)
    del seen[:]
    p.gw.delete_ike(p.now)
    deliver()
    assert calls("dev", INFORMATIONAL, False) == [("ike_down",)]
    assert calls("gw", INFORMATIONAL, True) == [("ike_down",)]


def test_the_hook_hears_each_protected_message_at_most_once():
    # issue 9 §2: the engine makes the one hook call for a protected message
    # (protected, ike_up or ike_rekey: the ones that hand over its notifies);
    # the exchanges only say which. Every exchange both ways, collisions, a
    # refused rekey, Child SA deletes.
    dh, gh = Recorder(), Recorder()
    p = Pair(dev_hook=dh, gw_hook=gh)
    per_message = []
    told = ("protected", "ike_up", "ike_rekey")

    def deliver():
        for _ in range(30):
            moved = False
            for name, other in (("dev", "gw"), ("gw", "dev")):
                rec = dh if other == "dev" else gh
                for data, _to, natt in p.engine(name).take_datagrams():
                    moved = True
                    n = len(rec.calls)
                    p.engine(other).receive(data, (p.addr[name], 4500 if natt else 500), natt, p.now)
                    raw = data[4:] if natt else data
                    if raw[16] == 46:  # SK: a protected message
                        per_message.append((raw[18], len([c for c in rec.calls[n:] if c[0] in told])))
            if not moved:
                return

    p.dev.initiate(p.now)
    deliver()
    for who in ("dev", "gw", "dev"):
        p.engine(who).rekey_ike(p.now)
        deliver()
    p.dev.rekey_child(p.now)
    deliver()
    p.gw.rekey_child(p.now)
    deliver()
    p.dev.liveness(p.now)
    p.gw.liveness(p.now)
    deliver()
    p.dev.rekey_ike(p.now)
    p.gw.rekey_ike(p.now)  # IKE SA rekey collision
    deliver()
    p.gw.rekey_child(p.now)
    p.dev.rekey_ike(p.now)  # refused: TEMPORARY_FAILURE (§2.25.2)
    deliver()
    p.dev.delete_child(p.now)
    deliver()
    p.gw.delete_ike(p.now)
    deliver()
    assert len(per_message) > 40
    assert max(n for _ex, n in per_message) == 1
    assert [n for ex, n in per_message if ex == IKE_AUTH] == [1, 1]
    no_bugs(p)


def test_a_refused_rekey_whose_collision_stands_is_one_hook_call():
    # Our IKE SA rekey is refused while the peer's crossing rekey stands
    # (§2.8.2): the hook hears that message once, as the peer's ike_rekey
    # (it used to hear protected and ike_rekey for it).
    dh, gh = Recorder(), Recorder()
    p = Pair(dev_hook=dh, gw_hook=gh)
    d, g = p.up()
    p.dev.rekey_ike(p.now)
    ours = p.dev.take_datagrams()[0][0]  # lost on the way
    p.gw.rekey_ike(p.now)
    theirs = p.gw.take_datagrams()[0][0]
    p.dev.receive(theirs, (p.addr["gw"], 500), False, p.now)  # crossing: a collision
    p.dev.take_datagrams()
    assert d.collision is not None
    msg_id = message.parse(ours).msg_id
    refusal = p.gw.protect(g, CREATE_CHILD_SA, FLAG_R | (FLAG_I if g.initiator else 0), msg_id, [(PT_N, payloads.encode_notify(14))])  # NO_PROPOSAL_CHOSEN
    n = len(dh.calls)
    p.dev.receive(refusal, (p.addr["gw"], 500), False, p.now)
    told = [c[0] for c in dh.calls[n:] if c[0] in ("protected", "ike_up", "ike_rekey")]
    assert told == ["ike_rekey"]
    assert d.state == state.REKEYED and d.successor is not None and d.successor.up()
    no_bugs(p)


def test_a_crossing_rekey_the_peer_deleted_before_answering_ours_leaves_ours_standing():
    # §2.8.2 with reordering: both ends rekey the IKE SA at once; the
    # gateway finds its own new SA redundant and deletes it, and that Delete
    # reaches the device before the gateway's answer to the device's rekey.
    # The device's rekey then stands alone (it used to raise on the closed
    # SA, leaving the old SA in REKEYING and the Child SA behind).
    p = Pair(seed=1)
    d, g = p.up()

    def to(eng, dgs, frm):
        for data, _t, natt in dgs:
            eng.receive(data, (p.addr[frm], 4500 if natt else 500), natt, p.now)
        return p.engine("gw" if frm == "dev" else "dev").take_datagrams()

    p.dev.rekey_ike(p.now)
    dreq = p.dev.take_datagrams()
    p.gw.rekey_ike(p.now)
    greq = p.gw.take_datagrams()
    gresp = to(p.gw, dreq, "dev")  # held back
    dresp = to(p.dev, greq, "gw")
    theirs = d.collision[0]
    gdelete = to(p.gw, dresp, "dev")  # the gateway's rekey completes: its SA is redundant
    deleted = to(p.dev, gdelete, "gw")  # the device answers that Delete
    assert theirs.state == state.CLOSED  # the case this test is about
    to(p.gw, deleted, "dev")
    out = to(p.dev, gresp, "gw")
    assert p.dev.counters["dropped_protocol"] == 0
    new = p.sa("dev")
    assert new is not d and d.state == state.DELETING and new.children and not d.children  # moved to ours
    for data, _t, natt in out:  # our Delete of the old SA, on to the gateway
        p.gw.receive(data, (p.addr["dev"], 4500 if natt else 500), natt, p.now)
    p.pump()
    nd, ng = p.sa("dev"), p.sa("gw")
    assert nd.spis() == ng.spis() and len(p.dev.sas) == len(p.gw.sas) == 1
    assert [c.spi_out for c in nd.children] == [c.spi_in for c in ng.children]
    no_bugs(p)


def test_exchange_modules_load_on_first_use():
    # a device that has only set up its IKE SA holds no INFORMATIONAL or
    # CREATE_CHILD_SA code (the engine's table imports a module when it is
    # first needed); a fresh interpreter, so nothing else loaded them
    code = (
        "import sys\n"
        "from ike_util import Pair\n"
        "p = Pair(); p.up()\n"
        "late = ('ike.informational', 'ike.create_child_sa')\n"
        "print(sorted(m for m in late if m in sys.modules))\n"
        "p.dev.liveness(p.now); p.pump()\n"
        "print(sorted(m for m in late if m in sys.modules))\n"
        "p.dev.rekey_child(p.now); p.pump()\n"
        "print(sorted(m for m in late if m in sys.modules))\n"
    )
    out = run_fresh(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["[]", "['ike.informational']", "['ike.create_child_sa', 'ike.informational']"]


_REPLAY = """
import json, sys
from ike_util import DetRng, dev_config
from ike.config import Config, forget_checks
from ike.engine import Engine
dev = Engine(Config(dev_config()), None, DetRng(1), None)
forget_checks()  # as the app does once its engine is made
dev.unload = sys.argv[2] == "1"
dev.start(0)  # as the device loop does (the configuration: no start delay here)
trace = []
for step in json.load(open(sys.argv[1])):
    if step[0] == "cmd":
        getattr(dev, step[1])(0)
    else:
        dev.receive(bytes.fromhex(step[1]), tuple(step[2]), step[3], 0)
    dev.take_datagrams()
    trace.append(sorted(m for m in sys.modules if m.startswith("ike.")))
c = dev.counters
print(json.dumps([c["internal_errors"], c["out_of_memory"], c["refused_ike_sa_init"], [s.state for s in dev.sas.values()]]))
print(json.dumps(trace))
"""


def _device_steps(p, script):
    """Run `script` ((who, command) pairs) on Pair p and record the device's
    side: [("cmd", name) or ("rx", hex, src, natt)], with a label per step
    (the command, or the exchange and whether it is a response)."""
    steps, labels = [], []
    real = p.dev.receive

    def receive(data, src, natt, now):
        m = message.parse(bytes(data[4:] if natt else data))
        steps.append(("rx", bytes(data).hex(), list(src), natt))
        labels.append(("rx", m.exchange, m.is_response()) if m is not None else ("rx", None, None))
        real(data, src, natt, now)

    p.dev.receive = receive
    for who, name in script:
        if who == "dev":
            steps.append(("cmd", name))
            labels.append(("cmd", name))
        getattr(p.engine(who), name)(p.now)
        p.pump()
    return steps, labels


def _replay(tmp_path, steps, unload):
    """The device's side alone in a fresh interpreter (both engines are
    deterministic: DetRng, now = 0): its counters and SA states at the end,
    and the ike.* modules loaded after each step."""
    import json

    (tmp_path / "steps.json").write_text(json.dumps(steps))
    out = run_fresh(_REPLAY, str(tmp_path / "steps.json"), "1" if unload else "0")
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


_BOTH_WAYS = (("dev", "initiate"), ("dev", "liveness"), ("gw", "rekey_child"), ("gw", "rekey_ike"), ("dev", "rekey_ike"), ("dev", "rekey_child"))


def test_a_device_that_only_initiates_never_loads_responder_code(tmp_path):
    # The device's side alone replays what it received here: a handshake, a
    # liveness check, Child SA and IKE SA rekeys both ways, and an
    # IKE_SA_INIT request it refuses (accept_ike_sa_init). The responder
    # halves of IKE_SA_INIT and IKE_AUTH are never imported.
    import sys

    p = Pair()
    steps, _ = _device_steps(p, _BOTH_WAYS)
    probe = message.build(b"q" * 8, bytes(8), 34, FLAG_I, 0, [(PT_N, payloads.encode_notify(16388, b"x" * 20))])
    p.dev.receive(probe, ("192.0.2.99", 500), False, p.now)
    assert p.sa("dev") is not None and p.dev.counters["refused_ike_sa_init"] == 1
    no_bugs(p)
    assert "ike.ike_sa_init_responder" in sys.modules and "ike.ike_auth_responder" in sys.modules  # the gateway's
    counters, trace = _replay(tmp_path, steps, unload=False)
    # the replay reached the same place: no bug, the probe refused, the SAs as here
    assert counters == [0, 0, 1, [s.state for s in p.dev.sas.values()]]
    modules = trace[-1]
    assert "ike.create_child_sa" in modules and "ike.ike_auth" in modules and "ike.ike_sa_init" in modules
    assert "ike.ike_sa_init_responder" not in modules and "ike.ike_auth_responder" not in modules


_TRANSIENT = ("ike.ike_sa_init", "ike.ike_sa_init_responder", "ike.ike_auth", "ike.ike_auth_responder", "ike.create_child_sa", "ike.proposals", "ike.ts", "ike.dh", "ike.modp", "ike.x25519", "ike.x25519_comb")


def test_a_device_unloads_the_handshake_and_rekey_code_once_no_sa_needs_it(tmp_path):
    # Engine.unload (a device's default on MicroPython): the replayed device
    # drops ike.ike_sa_init and D-H (ike.dh) once IKE_SA_INIT is answered,
    # ike.ike_auth and the helpers only exchanges use (proposals, ts) once
    # its IKE SA is up,
    # and ike.create_child_sa after each rekey, either side's; it loads them
    # again for the next rekey and for a new IKE SA after a Delete, and ends
    # where the engine that kept everything loaded ended.
    p = Pair()
    script = _BOTH_WAYS + (("dev", "delete_ike"), ("dev", "initiate"), ("dev", "liveness"), ("gw", "rekey_child"))
    steps, labels = _device_steps(p, script)
    no_bugs(p)
    assert p.sa("dev") is not None and p.sa("dev").state == state.ESTABLISHED
    counters, trace = _replay(tmp_path, steps, unload=True)
    assert counters == [0, 0, 0, [s.state for s in p.dev.sas.values()]]
    loaded = [[m for m in t if m in _TRANSIENT] for t in trace]
    # the two handshakes: after the IKE_SA_INIT answer only ike_auth and its
    # helpers are held; after the IKE_AUTH answer none of them
    inits = [i for i, lb in enumerate(labels) if lb == ("rx", 34, True)]
    auths = [i for i, lb in enumerate(labels) if lb == ("rx", 35, True)]
    assert len(inits) == 2 and len(auths) == 2
    for i in [i for i, lb in enumerate(labels) if lb == ("cmd", "initiate")]:
        # IKE_SA_INIT and its D-H run without ike.ts (ike_sa_init.ip4)
        assert {"ike.ike_sa_init", "ike.dh", "ike.proposals"} <= set(loaded[i]) and "ike.ts" not in loaded[i]
    for i in inits:
        assert loaded[i] == ["ike.ike_auth", "ike.proposals", "ike.ts"]
    for i in auths:
        assert loaded[i] == []
    # every CREATE_CHILD_SA exchange, ours or the gateway's, ends unloaded
    rekeys = [i for i, lb in enumerate(labels) if lb[:2] == ("rx", CREATE_CHILD_SA)]
    assert len(rekeys) == 5
    for i in rekeys:
        assert loaded[i] == [], labels[i]
    # ... and the device's own rekey requests loaded it again each time
    ours = [i for i, lb in enumerate(labels) if lb in (("cmd", "rekey_ike"), ("cmd", "rekey_child"))]
    for i in ours:
        assert "ike.create_child_sa" in loaded[i]
    assert loaded[-1] == [] and "ike.informational" in trace[-1] and "ike.engine" in trace[-1]


def test_cpython_keeps_every_exchange_module_loaded():
    # a host engine (qcd-peer, the tests) does not reload code per exchange
    p = Pair()
    assert p.dev.unload is False and p.gw.unload is False


def test_the_unload_lists_name_every_importer_of_a_helper():
    # engine._HELPERS: a helper is unloaded only when no exchange module is
    # loaded and none of its other holders, so every module of lib/ike that
    # imports it at its top level must be an exchange module or one of
    # those (an import inside a function goes through sys.modules at each
    # call and holds nothing); the exchange modules unloaded are those of
    # _EXCHANGES
    import pathlib
    import re

    from ike import engine

    lib = pathlib.Path(engine.__file__).parent
    names = {f.stem for f in lib.glob("*.py")}
    exchanges = {n for ex in engine._UNLOADED for n in engine._EXCHANGES[ex]}
    assert exchanges == {"ike_sa_init", "ike_sa_init_responder", "ike_auth", "ike_auth_responder", "create_child_sa"}
    for name, holders in engine._HELPERS:
        found = set()
        for f in lib.glob("*.py"):
            text = f.read_text()
            if re.search(r"^from ike import [^\n]*\b%s\b|^from ike\.%s import" % (name, name), text, re.M):
                found.add(f.stem)
        assert found - exchanges <= set(holders) <= names, name


def _balanced(rec, eng):
    """Every IKE SA the hook heard of (ike_created) is either still held by
    the engine or ended with exactly one ike_down; no ike_down for an SA
    never created; every SA the engine holds was announced."""
    made = [c[2] for c in rec.named("ike_created")]
    downs = [c[2] for c in rec.named("ike_down")]
    assert len({id(x) for x in made}) == len(made)
    held = list(eng.sas.values())
    for sa in held:
        assert sa in made and sa not in downs
    for sa in made:
        assert sa in held or downs.count(sa) == 1, sa.name()
    for sa in downs:
        assert sa in made


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("story", ["rekeys", "collision", "deletes", "timeout", "failed_rekey"])
def test_every_ike_sa_the_hook_hears_of_ends_with_one_ike_down(story, seed):
    # RFC 6290 §9.2 needs the hook to know every SA the engine holds, in any
    # state: the lifecycle calls must pair up whatever happens.
    dh, gh = Recorder(), Recorder()
    p = Pair(dev_hook=dh, gw_hook=gh, seed=seed)
    p.up()
    if story == "rekeys":
        for who in ("dev", "gw", "dev"):
            p.engine(who).rekey_ike(p.now)
            p.pump()
        p.dev.rekey_child(p.now)
        p.pump()
    elif story == "collision":
        p.dev.rekey_ike(p.now)
        p.gw.rekey_ike(p.now)
        p.pump()
    elif story == "deletes":
        p.gw.delete_ike(p.now)
        p.pump()
        p.up()
        p.dev.delete_ike(p.now)
        p.pump()
    elif story == "timeout":
        p.drop = lambda data, name: name == "gw"
        p.dev.rekey_ike(p.now)
        p.pump()
        p.advance(400000)
        assert not p.dev.sas
    else:  # the peer refuses the rekey (§2.25.2, its Child SA rekey is in
        # flight): the SPI we reserved for the new SA goes
        p.gw.rekey_child(p.now)
        p.dev.rekey_ike(p.now)
        p.pump()
        assert "ike_rekey_failed" in p.names("dev")
        reserved = [c[2] for c in dh.named("ike_created") if c[2] not in p.dev.sas.values()]
        assert reserved and [c for c in dh.named("ike_down") if c[2] is reserved[0]]
    p.advance(120000)  # linger times run out
    for rec, eng in ((dh, p.dev), (gh, p.gw)):
        _balanced(rec, eng)
    no_bugs(p)


def test_unknown_spis_go_to_the_hook_and_its_answer_goes_back():
    answer = b"A" * 40
    gh = Recorder(unknown_answer=answer)
    p = Pair(gw_hook=gh)
    p.up()
    stale = message.build_sk(b"s" * 8, b"t" * 8, INFORMATIONAL, 0, 5, [], os.urandom(32), os.urandom(32), os.urandom(16))
    p.gw.receive(NON_ESP_MARKER + stale, ("192.0.2.9", 4500), True, p.now)
    got = gh.named("unknown_ike_spi")[0]
    # the engine's parsed message, not bytes to parse again (one parse)
    assert got[1].buf == stale and got[1].spi_i == b"s" * 8 and got[2] == ("192.0.2.9", 4500)
    assert p.gw.take_datagrams() == [(NON_ESP_MARKER + answer, ("192.0.2.9", 4500), True)]


def test_unknown_spis_without_a_hook_answer_get_silence():
    p = Pair()
    p.up()
    stale = message.build_sk(b"s" * 8, b"t" * 8, INFORMATIONAL, 0, 5, [], os.urandom(32), os.urandom(32), os.urandom(16))
    p.gw.receive(stale, ("192.0.2.9", 500), False, p.now)
    assert p.gw.take_datagrams() == [] and p.gw.counters["dropped_unknown_spi"] == 1


@pytest.mark.parametrize("verdict", [True, False])
def test_unprotected_message_for_a_known_sa_is_judged_by_the_hook(verdict):
    gh = Recorder(verdict=verdict)
    p = Pair(gw_hook=gh)
    d, g = p.up()
    msg = message.build(d.spi_i, d.spi_r, INFORMATIONAL, FLAG_I | FLAG_R, 0, [(PT_N, payloads.encode_notify(4))])
    before = snapshot(p.gw)
    p.gw.receive(msg, ("192.0.2.77", 500), False, p.now)
    got = gh.named("unprotected")[0]
    assert (got[1].buf, got[2], got[3]) == (msg, ("192.0.2.77", 500), ("192.0.2.2", 500))
    assert p.gw.take_datagrams() == []  # never answered
    if verdict:
        assert not p.gw.sas
        assert "ike_down" in [e[0] for e in p.gw.take_events()]
        assert [c for c in gh.named("ike_down") if c[2] is g]
    else:
        assert snapshot(p.gw) == before


def test_esp_with_an_unknown_spi_goes_to_the_hook():
    gh = Recorder(esp_answer=b"E" * 40)
    p = Pair(dev_config(nat_t="force"), gw_hook=gh)
    p.up()
    pkt = b"\x12\x34\x56\x78" + os.urandom(60)
    p.gw.receive(pkt, ("192.0.2.2", 4500), True, p.now)
    assert gh.named("unknown_esp_spi")[0][1:] == (pkt, ("192.0.2.2", 4500))
    assert p.gw.take_datagrams() == [(NON_ESP_MARKER + b"E" * 40, ("192.0.2.2", 4500), True)]


def test_esp_round_trip_replay_and_forgery():
    p = Pair(dev_config(nat_t="force"))
    d, g = p.up()
    pkt = p.gw.send_esp(p.now)
    p.pump()
    assert d.children[0].packets_in == 1
    ev = [e for e in p.events["dev"] if e[0] == "esp"][0][1]
    assert ev["payload"][9] == 1 and ev["payload"][12:16] == bytes([10, 1, 0, 1])  # ICMP from the gateway side
    p.dev.receive(pkt, ("192.0.2.1", 4500), True, p.now)  # replayed
    bad = bytearray(pkt)
    bad[20] ^= 1
    p.dev.receive(bytes(bad), ("192.0.2.1", 4500), True, p.now)  # forged
    assert d.children[0].packets_in == 1 and p.dev.counters["dropped_esp"] == 2
    assert p.dev.take_datagrams() == []


def test_esp_needs_udp_encapsulation():
    p = Pair()
    p.up()
    assert p.dev.send_esp(p.now) is None


def test_nat_keepalive_and_short_datagrams_are_ignored():
    p = Pair(dev_config(nat_t="force"))
    p.up()
    before = snapshot(p.gw)
    for junk in (b"\xff", b"", b"\x00\x00", b"\x00\x00\x00\x00"):
        p.gw.receive(junk, ("192.0.2.2", 4500), True, p.now)
    assert p.gw.take_datagrams() == [] and snapshot(p.gw) == before


def test_a_hook_that_raises_never_breaks_the_engine():
    dh, gh = Recorder(raise_all=True), Recorder(raise_all=True)
    p = Pair(dev_hook=dh, gw_hook=gh)
    d, g = p.up()
    assert d and g
    p.dev.rekey_ike(p.now)
    p.pump()
    assert p.sa("dev") and p.dev.counters["hook_errors"] > 0
    no_bugs(p)


def test_initial_contact_replaces_the_sa_of_a_restarted_peer():
    p = Pair()
    d, g = p.up()
    p.dev = Engine(p.dev.cfg, None, p.dev.rng, None)  # the device restarted
    d2, g2 = p.up()
    assert g2.spis() != g.spis() and len(p.gw.sas) == 1
    assert [e for e in p.events["gw"] if e[0] == "ike_down" and "INITIAL_CONTACT" in e[1]["reason"]]


def test_half_open_sas_expire():
    p = Pair()
    p.dev.initiate(0)
    req = p.dev.take_datagrams()[0][0]
    p.gw.receive(req, ("192.0.2.2", 500), False, 0)
    assert len(p.gw.sas) == 1 and len(p.gw.take_datagrams()) == 1
    p.gw.tick(29999)
    assert len(p.gw.sas) == 1
    p.gw.tick(30000)
    assert not p.gw.sas and [e[0] for e in p.gw.take_events()] == ["ike_failed"]
    assert p.gw.take_datagrams() == []  # dropped without a word


def test_rekey_timers():
    p = Pair(dev_config(rekey_s=100, child_rekey_s=50))
    d, g = p.up()
    spis, child = d.spis(), d.children[0].spi_in
    p.advance(60000)
    assert p.sa("dev").children[0].spi_in != child and p.sa("dev").spis() == spis
    p.advance(50000)
    assert p.sa("dev").spis() != spis


# -- bad input ---------------------------------------------------------------------


def test_unsupported_critical_payload_is_refused_with_its_notify():
    p = Pair()
    d, g = p.up()
    from ike.const import GEN_HDR_LEN

    pls = [(PT_V, b"vendor")]
    data = bytearray(p.dev.protect(d, INFORMATIONAL, FLAG_I, d.my_msg_id, []))
    # Build the inner chain by hand with the critical bit set on an unknown type 99
    inner = bytes([0, 0x80, 0, GEN_HDR_LEN + 3]) + b"abc"
    pad = (16 - (len(inner) + 1) % 16) % 16
    from ike import crypto

    ek, ik = d.keys.sk_ei, d.keys.sk_ai  # the initiator's outbound keys, as bytes
    iv = os.urandom(16)
    ct = crypto.aes_cbc_encrypt(ek, iv, inner + bytes(pad) + bytes((pad,)))
    total = 28 + 4 + 16 + len(ct) + 16
    hdr = d.spi_i + d.spi_r + bytes([46, 0x20, INFORMATIONAL, FLAG_I]) + d.my_msg_id.to_bytes(4, "big") + total.to_bytes(4, "big")
    sk = bytes([99, 0]) + (total - 28).to_bytes(2, "big")
    signed = hdr + sk + iv + ct
    data = signed + crypto.hmac_sha256(ik, signed)[:16]
    assert pls  # (a Vendor ID is known and would be ignored)
    p.gw.receive(data, ("192.0.2.2", 500), False, p.now)
    resp = message.parse(p.gw.take_datagrams()[0][0])
    inner = message.decrypt_sk(resp, *d.keys.inbound(True))
    assert payloads.notifies(inner)[0][0] == UNSUPPORTED_CRITICAL_PAYLOAD and payloads.notifies(inner)[0][3] == b"\x63"


@pytest.fixture(scope="module")
def live_pair():
    p = Pair(dev_config(nat_t="force"))
    p.up()
    return p


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300), st.booleans(), st.booleans())
def test_garbage_gets_no_answer_and_changes_nothing(live_pair, junk, natt, to_dev):
    p = live_pair
    e = p.dev if to_dev else p.gw
    before = snapshot(e)
    e.receive(junk, ("192.0.2.66", 4500 if natt else 500), natt, p.now)
    assert e.take_datagrams() == []
    assert snapshot(e) == before
    assert e.counters["internal_errors"] == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["request", "response"]), st.sampled_from(["dev", "gw"]), st.data())
def test_tampered_messages_get_no_answer_and_change_nothing(live_pair, which, who, data):
    # The next real message of the session (a liveness request, or its
    # response), with one octet changed, delivered before the real one.
    p = live_pair
    sender = p.engine(who)
    receiver = p.gw if who == "dev" else p.dev
    sender.liveness(p.now)
    req = sender.take_datagrams()[0]
    if which == "request":
        victim, dgram = receiver, req
    else:
        receiver.receive(req[0], (p.addr[who], 4500), True, p.now)
        victim, dgram = sender, receiver.take_datagrams()[0]
    i = data.draw(st.integers(0, len(dgram[0]) - 1))
    bad = bytearray(dgram[0])
    bad[i] ^= data.draw(st.integers(1, 255))
    before = snapshot(victim)
    victim.receive(bytes(bad), ("192.0.2.66", 4500), True, p.now)
    assert victim.take_datagrams() == []
    assert snapshot(victim) == before
    assert victim.counters["internal_errors"] == 0
    # the genuine message still works afterwards
    if which == "request":
        receiver.receive(req[0], (p.addr[who], 4500), True, p.now)
        sender.receive(receiver.take_datagrams()[0][0], (p.addr["gw" if who == "dev" else "dev"], 4500), True, p.now)
    else:
        sender.receive(dgram[0], (p.addr["gw" if who == "dev" else "dev"], 4500), True, p.now)
    assert sender.sa_list()[0].request is None
    sender.take_events()
    receiver.take_events()


def test_authentication_failed_is_answered_inside_sk():
    p = Pair(gw=gw_config(psk="another-pre-shared-key"))
    p.up()
    resp = [w for w in p.wire if w[0] == "gw"][-1][1]
    m = message.parse(resp)
    assert m.is_protected() and m.exchange == IKE_AUTH
    assert AUTHENTICATION_FAILED not in notifies_in(resp)  # nothing readable outside SK


def test_sas_the_peer_never_deletes_after_its_rekey_are_dropped_later():
    # §2.8: the rekey's initiator deletes the old SA. If that Delete never
    # comes, the old SAs are not kept for ever.
    p = Pair()
    d, g = p.up()
    lost = [True]
    p.drop = lambda data, who: who == "gw" and lost[0] and message.parse(data) is not None and message.parse(data).exchange == INFORMATIONAL and not message.parse(data).is_response()
    p.gw.rekey_child(p.now)
    p.gw.rekey_ike(p.now)
    p.pump()
    assert len(p.dev.sas) == 2 and len(p.sa("dev").children) == 2
    p.advance(59000)
    assert len(p.dev.sas) == 2 and len(p.sa("dev").children) == 2
    p.advance(2000)
    assert len(p.dev.sas) == 1 and len(p.sa("dev").children) == 1
    no_bugs(p)


def test_no_reinitiation_after_our_own_delete():
    p = Pair(dev_config(reinitiate_s=1))
    p.up()
    p.dev.delete_ike(p.now)
    p.pump()
    p.advance(5000)
    assert not p.dev.sas and not p.gw.sas
    # but after the peer's Delete, the tunnel comes back
    p.up()
    p.gw.delete_ike(p.now)
    p.pump()
    p.advance(2000)
    assert p.sa("dev") is not None


def test_an_engine_given_a_hook_never_loads_the_null_hook():
    # a device passes its QCD hook: ike.hook's empty base class is not in
    # its heap; an engine without a hook gets NullHook
    code = (
        "import sys\n"
        "from ike_util import dev_config\n"
        "from ike.config import Config\n"
        "from ike.engine import Engine\n"
        "Engine(Config(dev_config()), object())\n"
        "print('ike.hook' in sys.modules)\n"
        "e = Engine(Config(dev_config()))\n"
        "print('ike.hook' in sys.modules, type(e.hook).__name__)\n"
    )
    out = run_fresh(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["False", "True NullHook"]

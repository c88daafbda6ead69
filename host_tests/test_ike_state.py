# ike.state: the transition tables themselves (h11's test_state.py is the
# model). Every legal step of an IKE SA and of a Child SA, that every other
# (state, event) pair raises ProtocolError and changes nothing, the tables
# of which requests the peer and we may send in each state, and that no code
# in lib/ike outside ike/state.py assigns a state.
import pathlib
import re

import pytest

from ike import state
from ike.sa import ChildSa, IkeSa
from ike.state import (
    AUTH_SENT,
    CLOSED,
    DELETING,
    ESTABLISHED,
    INIT_DONE,
    INIT_SENT,
    INSTALLED,
    NEW,
    REKEYED,
    REKEYING,
    ProtocolError,
)

IKE_STATES = (NEW, INIT_SENT, AUTH_SENT, INIT_DONE, ESTABLISHED, REKEYING, REKEYED, DELETING, CLOSED)
IKE_EVENTS = ("init_sent", "init_answered", "rekeyed_in", "init_done", "auth_done", "rekey_start", "rekey_done", "rekey_abort", "rekeyed_by_peer", "delete_start")
CHILD_STATES = (INSTALLED, REKEYING, REKEYED, DELETING, CLOSED)
CHILD_EVENTS = ("rekey_start", "rekey_done", "rekey_abort", "rekeyed_by_peer", "delete_start")
KEYS = (b"e" * 16, b"i" * 32, b"E" * 16, b"I" * 32)  # (encr in, integ in, encr out, integ out)
EXCHANGES = ("IKE_SA_INIT", "IKE_AUTH", "CREATE_CHILD_SA", "INFORMATIONAL")

# RFC 7296 §1.2, §1.3.2, §1.4.1, §2.8, written out once more by hand.
IKE_LEGAL = {
    (NEW, "init_sent"): INIT_SENT,
    (NEW, "init_answered"): INIT_DONE,
    (NEW, "rekeyed_in"): ESTABLISHED,
    (INIT_SENT, "init_done"): AUTH_SENT,
    (AUTH_SENT, "auth_done"): ESTABLISHED,
    (INIT_DONE, "auth_done"): ESTABLISHED,
    (ESTABLISHED, "rekey_start"): REKEYING,
    (REKEYING, "rekey_done"): REKEYED,
    (REKEYING, "rekey_abort"): ESTABLISHED,
    (ESTABLISHED, "rekeyed_by_peer"): REKEYED,
    (REKEYING, "rekeyed_by_peer"): REKEYED,
    (ESTABLISHED, "delete_start"): DELETING,
    (REKEYING, "delete_start"): DELETING,
    (REKEYED, "delete_start"): DELETING,
}
CHILD_LEGAL = {
    (INSTALLED, "rekey_start"): REKEYING,
    (REKEYING, "rekey_done"): REKEYED,
    (REKEYING, "rekey_abort"): INSTALLED,
    (INSTALLED, "rekeyed_by_peer"): REKEYED,
    (REKEYING, "rekeyed_by_peer"): REKEYED,
    (INSTALLED, "delete_start"): DELETING,
    (REKEYING, "delete_start"): DELETING,
    (REKEYED, "delete_start"): DELETING,
}
PEER_REQUESTS = {
    INIT_DONE: {"IKE_AUTH"},
    ESTABLISHED: {"CREATE_CHILD_SA", "INFORMATIONAL"},
    REKEYING: {"CREATE_CHILD_SA", "INFORMATIONAL"},
    REKEYED: {"INFORMATIONAL"},
    DELETING: {"INFORMATIONAL"},
}
OUR_REQUESTS = {
    INIT_SENT: {"IKE_SA_INIT"},
    AUTH_SENT: {"IKE_AUTH"},
    ESTABLISHED: {"CREATE_CHILD_SA", "INFORMATIONAL"},
    REKEYING: {"CREATE_CHILD_SA", "INFORMATIONAL"},
    REKEYED: {"INFORMATIONAL"},
    DELETING: {"INFORMATIONAL"},
}


def ike_sa(st):
    sa = IkeSa(b"i" * 8, b"r" * 8, True, ("192.0.2.1", 500), False, 0)
    sa.state = st
    return sa


def child_sa(st):
    c = ChildSa(0x1000, 0x2000, KEYS, [], [], True, 0)
    c.state = st
    return c


@pytest.mark.parametrize("st", IKE_STATES)
@pytest.mark.parametrize("event", IKE_EVENTS)
def test_ike_sa_step_is_legal_exactly_where_the_table_says(st, event):
    sa = ike_sa(st)
    want = IKE_LEGAL.get((st, event))
    if want is None:
        with pytest.raises(ProtocolError):
            state.set_ike(sa, event)
        assert sa.state == st  # a refused step changes nothing
        assert state.ike_if(sa, event) is False and sa.state == st
    else:
        state.set_ike(sa, event)
        assert sa.state == want
        sa.state = st
        assert state.ike_if(sa, event) is True and sa.state == want


@pytest.mark.parametrize("st", CHILD_STATES)
@pytest.mark.parametrize("event", CHILD_EVENTS)
def test_child_sa_step_is_legal_exactly_where_the_table_says(st, event):
    c = child_sa(st)
    want = CHILD_LEGAL.get((st, event))
    if want is None:
        with pytest.raises(ProtocolError):
            state.set_child(c, event)
        assert c.state == st
        assert state.child_if(c, event) is False and c.state == st
    else:
        state.set_child(c, event)
        assert c.state == want
        c.state = st
        assert state.child_if(c, event) is True and c.state == want


@pytest.mark.parametrize("st", IKE_STATES)
def test_any_ike_sa_can_close(st):
    sa = ike_sa(st)
    state.set_ike(sa, "closed")
    assert sa.state == CLOSED


@pytest.mark.parametrize("st", CHILD_STATES)
def test_any_child_sa_can_close(st):
    c = child_sa(st)
    state.set_child(c, "closed")
    assert c.state == CLOSED


def test_an_unknown_event_is_refused():
    with pytest.raises(ProtocolError):
        state.set_ike(ike_sa(ESTABLISHED), "reboot")
    with pytest.raises(ProtocolError):
        state.set_child(child_sa(INSTALLED), "reboot")


def test_new_sas_start_where_the_tables_begin():
    assert IkeSa(b"i" * 8, bytes(8), True, ("192.0.2.1", 500), False, 0).state is NEW
    assert ChildSa(0x1000, 0x2000, KEYS, [], [], True, 0).state == INSTALLED


def test_the_initiator_and_responder_paths_reach_established():
    sa = ike_sa(NEW)
    for event in ("init_sent", "init_done", "auth_done"):
        state.set_ike(sa, event)
    assert sa.state == ESTABLISHED and state.is_up(sa.state)
    sa = ike_sa(NEW)
    for event in ("init_answered", "auth_done", "rekey_start", "rekey_done", "delete_start"):
        state.set_ike(sa, event)
    assert sa.state == DELETING and not state.is_up(sa.state)


@pytest.mark.parametrize("st", IKE_STATES)
@pytest.mark.parametrize("exchange", EXCHANGES)
def test_peer_request_table(st, exchange):
    if exchange in PEER_REQUESTS.get(st, set()):
        state.check_peer_request(st, exchange)
    else:
        with pytest.raises(ProtocolError):
            state.check_peer_request(st, exchange)


@pytest.mark.parametrize("st", IKE_STATES)
@pytest.mark.parametrize("exchange", EXCHANGES)
def test_our_request_table(st, exchange):
    assert state.we_may_request(st, exchange) is (exchange in OUR_REQUESTS.get(st, set()))


def test_up_and_authenticated_states():
    assert [s for s in IKE_STATES if state.is_up(s)] == [ESTABLISHED, REKEYING]
    assert [s for s in IKE_STATES if state.authenticated(s)] == [ESTABLISHED, REKEYING, REKEYED, DELETING]


def test_an_ike_sa_rekey_waits_for_a_child_sa_rekey_in_flight():
    sa = ike_sa(ESTABLISHED)
    sa.children = [child_sa(INSTALLED), child_sa(REKEYING)]
    assert not state.may_rekey_ike(sa)  # RFC 7296 §2.25.2
    sa.children[1].state = INSTALLED
    assert state.may_rekey_ike(sa)
    for st in IKE_STATES:
        if st != ESTABLISHED:
            sa.state = st
            assert not state.may_rekey_ike(sa), st


@pytest.mark.parametrize("ike_st", (ESTABLISHED, REKEYING))
@pytest.mark.parametrize("child_st", CHILD_STATES)
def test_how_a_peers_child_sa_rekey_is_refused(ike_st, child_st):
    got = state.child_rekey_refusal(ike_st, child_st)
    if child_st in (REKEYED, CLOSED):
        assert got == "CHILD_SA_NOT_FOUND"  # RFC 7296 §3.10.1
    elif child_st == DELETING or ike_st == REKEYING:
        assert got == "TEMPORARY_FAILURE"  # §2.25.1, §2.25.2
    else:
        assert got is None
        state.set_child(child_sa(child_st), "rekeyed_by_peer")  # then legal


def test_no_state_is_assigned_outside_ike_state():
    # every transition goes through the tables: the only assignments left in
    # lib/ike are the constructors' starting states (pinned above)
    lib = pathlib.Path(__file__).resolve().parent.parent / "lib" / "ike"
    found = []
    for f in sorted(lib.glob("*.py")):
        if f.name == "state.py":
            continue
        for line in f.read_text().splitlines():
            if re.search(r"\.state\s*=[^=]", line):
                found.append("%s: %s" % (f.name, line.strip()))
    assert found == ["sa.py: self.state = state.NEW", "sa.py: self.state = state.INSTALLED"]

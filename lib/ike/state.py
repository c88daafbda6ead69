# The IKE SA and Child SA state machines as tables of legal transitions
# (the h11 model: _state.py holds the rules, the rest of the engine asks).
#
# Everything that changes an SA's state lives here (h11's _state.py: "everything
# that affects the state machine must live here"): the exchanges and the
# engine call set_ike / set_child (or ike_if / child_if for a step that is
# taken only when legal) and never assign .state themselves; the questions
# "may the peer send this request now", "may we start this one" and "how is
# a peer's Child SA rekey refused" are answered from the tables below.
# host_tests/test_ike_state.py pins the tables.
#
# An IKE SA, from either side (RFC 7296 §1.2, §1.3.2, §1.4.1, §2.8):
#
#   initiator:  NEW --init_sent--> INIT_SENT --init_done--> AUTH_SENT --auth_done--> ESTABLISHED
#   responder:  NEW --init_answered--> INIT_DONE --auth_done--> ESTABLISHED
#   rekey:      NEW --rekeyed_in--> ESTABLISHED   (the new SA of an IKE SA rekey)
#   ESTABLISHED --rekey_start--> REKEYING --rekey_done--> REKEYED
#                                REKEYING --rekey_abort--> ESTABLISHED
#   ESTABLISHED|REKEYING --rekeyed_by_peer--> REKEYED   (peer's rekey won)
#   ESTABLISHED|REKEYING|REKEYED --delete_start--> DELETING
#   any --closed--> CLOSED   (Delete answered, retransmission gave up,
#                             QCD verdict, INITIAL_CONTACT, auth failure)
#
# REKEYED is an old SA whose successor exists: it only waits for the Delete
# exchange that ends it (the rekey initiator sends it, §2.8).

NEW = None  # an IKE SA object not yet in a state (sa.IkeSa starts here)
INIT_SENT = "INIT_SENT"
AUTH_SENT = "AUTH_SENT"
INIT_DONE = "INIT_DONE"
ESTABLISHED = "ESTABLISHED"
REKEYING = "REKEYING"
REKEYED = "REKEYED"
DELETING = "DELETING"
CLOSED = "CLOSED"


class ProtocolError(Exception):
    """A transition the state table forbids: the peer (or a caller) asked for
    something illegal in this state; args (what, state). Raised by a peer's
    message, the engine drops that message and counts it in
    counters["dropped_protocol"]."""


_IKE = {
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

# Which request exchanges a peer may send us in each state. IKE_SA_INIT is
# never sent on an existing SA; IKE_AUTH only right after it (§1.2); an old
# SA that has been rekeyed only gets its Delete (or a liveness check that
# crossed the rekey), never a new CREATE_CHILD_SA (§2.8).
_PEER_REQUESTS = {
    INIT_DONE: ("IKE_AUTH",),
    ESTABLISHED: ("CREATE_CHILD_SA", "INFORMATIONAL"),
    REKEYING: ("CREATE_CHILD_SA", "INFORMATIONAL"),
    REKEYED: ("INFORMATIONAL",),
    DELETING: ("INFORMATIONAL",),
}

# Which exchanges we may start in each state.
_OUR_REQUESTS = {
    INIT_SENT: ("IKE_SA_INIT",),
    AUTH_SENT: ("IKE_AUTH",),
    ESTABLISHED: ("CREATE_CHILD_SA", "INFORMATIONAL"),
    REKEYING: ("CREATE_CHILD_SA", "INFORMATIONAL"),
    REKEYED: ("INFORMATIONAL",),
    DELETING: ("INFORMATIONAL",),
}


def _next(table, st, event):
    if event == "closed":
        return CLOSED
    new = table.get((st, event))
    if new is None:
        raise ProtocolError(event, st)
    return new


def _if(table, sa, event):
    new = table.get((sa.state, event))
    if new is None:
        return False
    sa.state = new
    return True


def set_ike(sa, event):
    """The one way an IKE SA changes state; ProtocolError when illegal."""
    sa.state = _next(_IKE, sa.state, event)


def ike_if(sa, event):
    """Take the step when the table allows it; True if it was taken."""
    return _if(_IKE, sa, event)


def check_peer_request(state, exchange_name):
    """A request from the peer on an SA in `state`: ProtocolError unless the
    table allows that exchange (the engine then drops the message)."""
    if exchange_name not in _PEER_REQUESTS.get(state, ()):
        raise ProtocolError(exchange_name, state)


def we_may_request(state, exchange_name):
    return exchange_name in _OUR_REQUESTS.get(state, ())


def is_up(state):
    """The SA is authenticated and usable (Child SAs carry traffic)."""
    return state in (ESTABLISHED, REKEYING)


def authenticated(state):
    """IKE_AUTH completed on this SA (it may be on its way out since)."""
    return state in (ESTABLISHED, REKEYING, REKEYED, DELETING)


def may_rekey_ike(sa):
    """We may start an IKE SA rekey: the SA is ESTABLISHED and no Child SA
    rekey of ours is in flight (§2.25.2 keeps them apart)."""
    if (sa.state, "rekey_start") not in _IKE:
        return False
    for c in sa.children:
        if c.state == REKEYING:
            return False
    return True


# A Child SA (RFC 7296 §1.3.1, §1.3.3, §1.4.1, §2.8):
#   INSTALLED --rekey_start--> REKEYING --rekey_done--> REKEYED --delete_start--> DELETING
#   REKEYING --rekey_abort--> INSTALLED
#   INSTALLED|REKEYING --rekeyed_by_peer--> REKEYED
#   INSTALLED|REKEYING|REKEYED --delete_start--> DELETING
#   any --closed--> CLOSED
INSTALLED = "INSTALLED"

_CHILD = {
    (INSTALLED, "rekey_start"): REKEYING,
    (REKEYING, "rekey_done"): REKEYED,
    (REKEYING, "rekey_abort"): INSTALLED,
    (INSTALLED, "rekeyed_by_peer"): REKEYED,
    (REKEYING, "rekeyed_by_peer"): REKEYED,
    (INSTALLED, "delete_start"): DELETING,
    (REKEYING, "delete_start"): DELETING,
    (REKEYED, "delete_start"): DELETING,
}


def set_child(child, event):
    """The one way a Child SA changes state; ProtocolError when illegal."""
    child.state = _next(_CHILD, child.state, event)


def child_if(child, event):
    """Take the step when the table allows it; True if it was taken."""
    return _if(_CHILD, child, event)


# A peer's request to rekey one of our Child SAs (§1.3.3), refused by the
# state of that Child SA or of its IKE SA: the notify name we answer with,
# None when the rekey may go ahead (then the Child SA takes rekeyed_by_peer).
#   REKEYED, CLOSED         CHILD_SA_NOT_FOUND (§3.10.1: it is gone for us)
#   DELETING                TEMPORARY_FAILURE  (§2.25.1: we are deleting it)
#   IKE SA REKEYING         TEMPORARY_FAILURE  (§2.25.2)
def child_rekey_refusal(ike_state, child_state):
    if child_state in (REKEYED, CLOSED):
        return "CHILD_SA_NOT_FOUND"
    if (child_state, "rekeyed_by_peer") not in _CHILD or ike_state == REKEYING:
        return "TEMPORARY_FAILURE"
    return None

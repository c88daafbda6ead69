# The IKE SA and Child SA state machines as tables of legal transitions
# (the h11 model: _state.py holds the rules, the rest of the engine asks).
#
# An IKE SA, from either side (RFC 7296 §1.2, §1.3.2, §1.4.1, §2.8):
#
#   initiator:  INIT_SENT --init_done--> AUTH_SENT --auth_done--> ESTABLISHED
#   responder:  (request) --> INIT_DONE --auth_done--> ESTABLISHED
#   ESTABLISHED --rekey_start--> REKEYING --rekey_done--> REKEYED
#                                REKEYING --rekey_abort--> ESTABLISHED
#   ESTABLISHED|REKEYING --rekeyed_by_peer--> REKEYED   (peer's rekey won)
#   ESTABLISHED|REKEYING|REKEYED --delete_start--> DELETING
#   any --closed--> CLOSED   (Delete answered, retransmission gave up,
#                             QCD verdict, INITIAL_CONTACT, auth failure)
#
# REKEYED is an old SA whose successor exists: it only waits for the Delete
# exchange that ends it (the rekey initiator sends it, §2.8).

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
    something illegal in this state. The engine drops the message."""


_IKE = {
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


def ike_next(state, event):
    if event == "closed":
        return CLOSED
    new = _IKE.get((state, event))
    if new is None:
        raise ProtocolError("IKE SA: %s not allowed in %s" % (event, state))
    return new


def peer_may_request(state, exchange_name):
    return exchange_name in _PEER_REQUESTS.get(state, ())


def we_may_request(state, exchange_name):
    return exchange_name in _OUR_REQUESTS.get(state, ())


def is_up(state):
    """The SA is authenticated and usable (Child SAs carry traffic)."""
    return state in (ESTABLISHED, REKEYING)


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


def child_next(state, event):
    if event == "closed":
        return CLOSED
    new = _CHILD.get((state, event))
    if new is None:
        raise ProtocolError("Child SA: %s not allowed in %s" % (event, state))
    return new

# INFORMATIONAL exchanges (RFC 7296 §1.4, §2.4): liveness checks, Delete of
# the IKE SA or of Child SAs, and notifies the hook wants to send on an
# established SA (RFC 6290 §4.3: the token after an IKE SA rekey we
# initiated).
#
#   HDR, SK {}                  <-->  HDR, SK {}               liveness (§2.4)
#   HDR, SK {D(IKE)}            <-->  HDR, SK {}               close the IKE SA
#   HDR, SK {D(ESP, spi...)}    <-->  HDR, SK {D(ESP, spi...)} close Child SAs (§1.4.1)
#   HDR, SK {N...}              <-->  HDR, SK {}

from ike import payloads, state
from ike.const import INFORMATIONAL, INVALID_SYNTAX, PROTO_ESP, PROTO_IKE, PT_D, PT_N


def start(eng, sa, kind, arg, now):
    if not state.we_may_request(sa.state, "INFORMATIONAL"):
        return
    if kind == "liveness":
        pls = []
    elif kind == "delete_ike":
        state.ike_if(sa, "delete_start")  # not again when DELETING already
        pls = [(PT_D, payloads.encode_delete(PROTO_IKE, []))]
    elif kind == "delete_child":
        child = arg
        if child not in sa.children or not state.child_if(child, "delete_start"):
            return
        pls = [(PT_D, payloads.encode_delete(PROTO_ESP, [child.spi_in.to_bytes(4, "big")]))]
    else:  # "notify": payloads prepared by the hook
        pls = list(arg)
    eng.send_request(sa, kind, INFORMATIONAL, pls, arg, now)


def on_response(eng, sa, req, m, inner, now):
    """Returns the hook event (engine._tell)."""
    ns = payloads.notifies(inner) or []
    if req.kind == "liveness":
        eng.event("liveness", sa=sa.name(), rtt_ms=now - req.sent, tries=req.tries)
        eng.log("ike: liveness check of %s answered (%d ms, %d retransmissions)" % (sa.name(), now - req.sent, req.tries))
    elif req.kind == "delete_ike":
        eng.close(sa, "deleted by us", now)
    elif req.kind == "delete_child":
        # The Child SA may have moved to a new IKE SA meanwhile (a rekey by
        # the peer): remove it wherever it lives now.
        owner = eng.owner(req.ctx)
        if owner is not None:
            eng.remove_child(owner, req.ctx, now, "deleted by us")
    if req.kind == "delete_ike":  # that SA is gone: ike_down covered it
        return None
    return ("protected", ns)


def on_request(eng, sa, m, inner, now):
    """Returns (payloads of our response, hook event)."""
    ns = payloads.notifies(inner) or []
    deletes = []
    for p in inner:
        if p[0] == PT_D:
            d = payloads.decode_delete(p[2])
            if d is None:
                return [(PT_N, payloads.encode_notify(INVALID_SYNTAX))], None
            deletes.append(d)
    for proto, _spis in deletes:
        if proto == PROTO_IKE:
            # §1.4.1: deleting the IKE SA deletes its Child SAs; answer with
            # an empty INFORMATIONAL response. The hook hears ike_down (a
            # token in this message would go with the SA).
            eng.close(sa, "deleted by peer", now)
            return [], None
    ours = []
    gone = []
    for proto, spis in deletes:
        if proto != PROTO_ESP:
            continue
        for spi in spis:
            if len(spi) != 4:
                continue
            v = int.from_bytes(spi, "big")
            for c in sa.children:
                if c.spi_out == v and c not in gone:
                    # §1.4.1: "the responder ... deletes the SAs it has paired
                    # with them and includes their SPIs in a Delete payload";
                    # an SA we are deleting ourselves is not repeated.
                    if c.state != state.DELETING:
                        ours.append(c.spi_in.to_bytes(4, "big"))
                    gone.append(c)
    for c in gone:
        eng.remove_child(sa, c, now, "deleted by peer")
    if not deletes and not ns:
        eng.event("liveness_answered", sa=sa.name())
    return ([(PT_D, payloads.encode_delete(PROTO_ESP, ours))] if ours else []), ("protected", ns)

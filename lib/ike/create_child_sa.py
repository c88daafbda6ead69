# CREATE_CHILD_SA (RFC 7296 §1.3): rekeying a Child SA (§1.3.3) and the IKE
# SA (§1.3.2), either side initiating, with the collision rules of §2.8.1
# and §2.8.2. New Child SAs beyond the first are not offered; a request for
# one is answered NO_ADDITIONAL_SAS.
#
#   Child SA:  HDR, SK {N(REKEY_SA), SA, Ni, TSi, TSr}  -->
#                                   <--  HDR, SK {SA, Nr, TSi, TSr}
#   IKE SA:    HDR, SK {SA, Ni, KEi}  -->
#                                   <--  HDR, SK {SA, Nr, KEr, [N(hook)...]}
#
# Afterwards the rekey's initiator deletes the old SA (§2.8). The hook adds
# notifies to our response that rekeys the IKE SA (rekey_response) and, when
# we initiated that rekey, returns from ike_rekey what goes in an
# INFORMATIONAL request on the new SA, as RFC 6290 §4.3 wants for the token.
# on_request returns (payloads of our response, hook event), on_response
# the hook event; the engine calls the hook (engine._tell) and responds.

from ike import dh, keymat, payloads, proposals, state
from ike import ts as tsmod
from ike.const import (
    CHILD_SA_NOT_FOUND,
    CREATE_CHILD_SA,
    ERROR_MAX,
    INVALID_KE_PAYLOAD,
    NO_ADDITIONAL_SAS,
    NO_PROPOSAL_CHOSEN,
    NONCE_MAX,
    NONCE_MIN,
    PROTO_ESP,
    PROTO_IKE,
    PT_KE,
    PT_N,
    PT_NONCE,
    PT_SA,
    PT_TSI,
    PT_TSR,
    REKEY_SA,
    TEMPORARY_FAILURE,
    TS_UNACCEPTABLE,
    notify_name,
)
from ike.sa import ChildSa, IkeSa


def _n(ntype, data=b"", proto=0, spi=b""):
    return (PT_N, payloads.encode_notify(ntype, data, proto, spi))


def _nonce_ok(n):
    return n is not None and NONCE_MIN <= len(n) <= NONCE_MAX


def _lowest_in(ours, theirs):
    """§2.8.1/§2.8.2: "the SA created with the lowest of the four nonces
    used in the two exchanges SHOULD be closed by the endpoint that created
    it". True when that lowest nonce belongs to exchange `ours`."""
    return min(ours) < min(theirs)


# -- starting ------------------------------------------------------------------


def start(eng, sa, kind, arg, now):
    if not state.we_may_request(sa.state, "CREATE_CHILD_SA"):
        return
    if kind == "rekey_child":
        child = arg
        if child not in sa.children or not state.child_if(child, "rekey_start"):
            return
        spi = eng.new_child_spi()
        ni = eng.nonce()
        pls = [
            # §1.3.3: "The REKEY_SA notification MUST be included ... the SPI
            # of the SA being rekeyed": the one the peer knows as its
            # outbound (our inbound; strongSwan does the same).
            _n(REKEY_SA, b"", PROTO_ESP, child.spi_in.to_bytes(4, "big")),
            (PT_SA, payloads.encode_sa(proposals.esp_offer(spi.to_bytes(4, "big")))),
            (PT_NONCE, ni),
            (PT_TSI, payloads.encode_ts(child.ts_local)),
            (PT_TSR, payloads.encode_ts(child.ts_peer)),
        ]
        eng.send_request(sa, kind, CREATE_CHILD_SA, pls, (child, spi, ni), now)
    elif kind == "rekey_ike":
        if not state.may_rekey_ike(sa):
            return
        state.set_ike(sa, "rekey_start")
        spi = eng.new_spi()
        ni = eng.nonce()
        kp = dh.KeyPair(sa.group, eng.rng)
        pls = [
            (PT_SA, payloads.encode_sa(proposals.ike_offer([sa.group], spi))),
            (PT_NONCE, ni),
            (PT_KE, payloads.encode_ke(sa.group, kp.public)),
        ]
        # The new SA exists at the peer as soon as it answers, and it may
        # use it before its answer reaches us: the hook holds our new SPI
        # from now on (RFC 6290 §9.2); the peer's SPI is filled in later.
        new = IkeSa(spi, bytes(8), True, sa.peer, sa.natt, now)
        eng.reserve(new, now)
        eng.send_request(sa, kind, CREATE_CHILD_SA, pls, (spi, ni, kp, new), now)


# -- our request answered ------------------------------------------------------------


def on_response(eng, sa, req, m, inner, now):
    ns = payloads.notifies(inner) or []
    errs = [n for n in ns if n[0] <= ERROR_MAX]
    if req.kind == "rekey_child":
        _child_answered(eng, sa, req, inner, ns, errs, now)
        return ("protected", ns)
    return _ike_answered(eng, sa, req, inner, ns, errs, now)


def _child_answered(eng, sa, req, inner, ns, errs, now):
    child, spi, ni = req.ctx
    props = payloads.decode_sa(payloads.first(inner, PT_SA) or b"")
    nr = payloads.first(inner, PT_NONCE)
    tsi = payloads.decode_ts(payloads.first(inner, PT_TSI) or b"")
    tsr = payloads.decode_ts(payloads.first(inner, PT_TSR) or b"")
    spi_out = proposals.check_esp_answer(props) if props is not None else None
    if errs or spi_out is None or not _nonce_ok(nr) or tsi is None or tsr is None or not tsmod.within(tsi, child.ts_local) or not tsmod.within(tsr, child.ts_peer):
        why = notify_name(errs[0][0]) if errs else "unacceptable answer"
        state.child_if(child, "rekey_abort")
        eng.event("child_rekey_failed", sa=sa.name(), child=child.name(), reason=why)
        eng.log("ike: rekey of Child SA %s failed (%s)" % (child.name(), why))
        return
    nr = bytes(nr)
    ei, ii, er, ir = keymat.child_keys(sa.keys.sk_d, ni, nr)
    new = ChildSa(spi, int.from_bytes(spi_out, "big"), (er, ir, ei, ii), tsi, tsr, True, now)
    new.rekey_of = child
    eng.install_child(sa, new, now)
    col = child.collision
    if col is not None:
        theirs, tni, tnr = col
        child.collision = None
        if _lowest_in((ni, nr), (tni, tnr)):
            # Our new SA is the redundant one: we close it; the peer, whose
            # rekey won, deletes the old one.
            eng.log("ike: Child SA rekey collision: ours (%s) is redundant" % new.name())
            eng.queue(sa, "delete_child", new)
            eng.event("child_rekeyed", sa=sa.name(), old=child.name(), new=theirs.name(), collision=True)
            return
        eng.log("ike: Child SA rekey collision: ours (%s) wins" % new.name())
    else:
        state.child_if(child, "rekey_done")
    if child in sa.children:
        eng.queue(sa, "delete_child", child)
    eng.event("child_rekeyed", sa=sa.name(), old=child.name(), new=new.name(), collision=col is not None)


def _ike_answered(eng, sa, req, inner, ns, errs, now):
    spi, ni, kp, new = req.ctx
    props = payloads.decode_sa(payloads.first(inner, PT_SA) or b"")
    nr = payloads.first(inner, PT_NONCE)
    ke = payloads.decode_ke(payloads.first(inner, PT_KE) or b"")
    chosen = proposals.check_ike_answer(props, [sa.group], 8) if props is not None else None
    g_ir = kp.shared(ke[1]) if ke is not None and chosen is not None and ke[0] == sa.group else None
    if errs or chosen is None or not _nonce_ok(nr) or g_ir is None:
        why = notify_name(errs[0][0]) if errs else "unacceptable answer"
        eng.log("ike: rekey of IKE SA %s failed (%s)" % (sa.name(), why))
        col = _crossing(sa)
        state.ike_if(sa, "rekey_abort")
        eng.release(new, now)
        if col is not None:
            # the peer's rekey stands: the hook hears that rekey (one call
            # for this message; its error notifies go nowhere)
            return _finish(eng, sa, col[0], False, (), now)
        eng.event("ike_rekey_failed", sa=sa.name(), reason=why)
        return ("protected", ns)
    nr = bytes(nr)
    new.spi_r = chosen[0]
    new.peer = sa.peer
    new.natt = sa.natt
    new.created = new.last_recv = now
    _inherit(new, sa, ni, nr, keymat.skeyseed_rekey(sa.keys.sk_d, g_ir, ni, nr), now)
    eng.add_sa(new, True)
    col = _crossing(sa)
    if col is not None:
        theirs, tni, tnr = col
        if _lowest_in((ni, nr), (tni, tnr)):
            # §2.8.2: ours is redundant; we delete it, the peer's stands and
            # the peer deletes the old SA.
            eng.log("ike: IKE SA rekey collision: ours (%s) is redundant" % new.name())
            new.successor = theirs
            # Held until the Delete completes (ike_down from eng.close).
            eng.queue(new, "delete_ike", None)
            return _finish(eng, sa, theirs, False, (), now)
        eng.log("ike: IKE SA rekey collision: ours (%s) wins" % new.name())
        # The peer deletes its redundant SA; until then it only waits (if we
        # are not deleting it already).
        theirs.successor = new
        state.ike_if(theirs, "rekeyed_by_peer")
        theirs.last_recv = now
    # the response's notifies belong to the new SA (its token, §4.3)
    return _finish(eng, sa, new, True, ns, now)


def _crossing(sa):
    """The peer's IKE SA rekey that crossed ours (§2.8.2), taken off `sa`;
    None when there was none or the peer has deleted its SA since (its
    Delete overtook its answer to our request): then ours stands alone."""
    col = sa.collision
    sa.collision = None
    if col is not None and col[0].state == state.CLOSED:
        return None
    return col


def _inherit(new, old, ni, nr, seed, now):
    state.set_ike(new, "rekeyed_in")
    new.group = old.group
    new.nat_detected = old.nat_detected
    new.peer_id = old.peer_id
    new.ni = ni
    new.nr = nr
    new.keys = keymat.IkeKeys(seed, ni, nr, new.spi_i, new.spi_r)
    new.established = now


def _finish(eng, old, new, we_initiated, ns, now):
    """The rekey is decided: `new` replaces `old` (§2.8). Children move;
    returns the hook event: ike_rekey, once (the old SA stays held until
    its ike_down)."""
    if not (we_initiated and state.ike_if(old, "rekey_done")):
        state.ike_if(old, "rekeyed_by_peer")
    old.successor = new
    old.reported = False
    old.last_recv = now
    new.reported = True
    eng.move_children(old, new, now)
    # Queued work moves with the children; the old SA only gets deleted.
    new.tasks = [t for t in old.tasks if t[0] != "delete_ike"] + new.tasks
    old.tasks = [t for t in old.tasks if t[0] == "delete_ike"]
    eng.event("ike_rekeyed", old=old.name(), new=new.name(), initiator=we_initiated)
    eng.log("ike: IKE SA %s rekeyed to %s (%s)" % (old.name(), new.name(), "by us" if we_initiated else "by peer"))
    if we_initiated:
        eng.queue(old, "delete_ike", None)
    return ("ike_rekey", old, new, ns, we_initiated)


# -- the peer's request ------------------------------------------------------------


def on_request(eng, sa, m, inner, now):
    ns = payloads.notifies(inner) or []
    rekey = [n for n in ns if n[0] == REKEY_SA]
    props = payloads.decode_sa(payloads.first(inner, PT_SA) or b"")
    ni = payloads.first(inner, PT_NONCE)
    # an IKE SA rekey's notifies go to the hook with ike_rekey (or nowhere)
    ev = ("protected", ns) if rekey or not props or props[0][1] != PROTO_IKE else None
    if props is None or not _nonce_ok(ni):
        return [_n(7)], ev  # INVALID_SYNTAX
    ni = bytes(ni)
    if rekey:
        return _rekey_child_request(eng, sa, inner, rekey[0], props, ni, now), ev
    if props[0][1] == PROTO_IKE:
        return _rekey_ike_request(eng, sa, inner, props, ni, ns, now)
    return [_n(NO_ADDITIONAL_SAS)], ev


def _rekey_child_request(eng, sa, inner, n, props, ni, now):
    """Our response's payloads."""
    cfg = eng.cfg
    _t, proto, spi, _d = n
    child = None
    if proto == PROTO_ESP and len(spi) == 4:
        v = int.from_bytes(spi, "big")
        for c in sa.children:
            if c.spi_out == v:
                child = c
    why = "CHILD_SA_NOT_FOUND" if child is None else state.child_rekey_refusal(sa.state, child.state)
    if why == "CHILD_SA_NOT_FOUND":
        # §3.10.1 CHILD_SA_NOT_FOUND
        return [_n(CHILD_SA_NOT_FOUND, b"", proto, spi)]
    if why is not None:
        # §2.25.1 (a Child SA we are deleting), §2.25.2 (while we rekey the
        # IKE SA): "SHOULD reply with TEMPORARY_FAILURE"
        return [_n(TEMPORARY_FAILURE)]
    chosen = proposals.choose_esp(props)
    tsi_o = payloads.decode_ts(payloads.first(inner, PT_TSI) or b"")
    tsr_o = payloads.decode_ts(payloads.first(inner, PT_TSR) or b"")
    if chosen is None or payloads.first(inner, PT_KE) is not None:
        return [_n(NO_PROPOSAL_CHOSEN)]
    tsi = tsmod.narrow(tsi_o or [], cfg.ts_peer)
    tsr = tsmod.narrow(tsr_o or [], cfg.ts_local)
    if not tsi or not tsr:
        return [_n(TS_UNACCEPTABLE)]
    num, spi_peer = chosen
    nr = eng.nonce()
    our = eng.new_child_spi()
    ei, ii, er, ir = keymat.child_keys(sa.keys.sk_d, ni, nr)
    new = ChildSa(our, int.from_bytes(spi_peer, "big"), (ei, ii, er, ir), tsr, tsi, False, now)
    new.rekey_of = child
    if child.state == state.REKEYING:
        # §2.8.1: both ends rekey the same Child SA; we answer and decide
        # when our own exchange completes.
        child.collision = (new, ni, nr)
        eng.log("ike: Child SA rekey collision on %s" % child.name())
    state.set_child(child, "rekeyed_by_peer")
    child.rekeyed_at = now
    eng.install_child(sa, new, now)
    if child.collision is None:
        eng.event("child_rekeyed", sa=sa.name(), old=child.name(), new=new.name(), collision=False)
    return [
        (PT_SA, payloads.encode_sa(proposals.esp_chosen(num, our.to_bytes(4, "big")))),
        (PT_NONCE, nr),
        (PT_TSI, payloads.encode_ts(tsi)),
        (PT_TSR, payloads.encode_ts(tsr)),
    ]


def _rekey_ike_request(eng, sa, inner, props, ni, ns, now):
    """(our response's payloads, hook event)."""
    ke = payloads.decode_ke(payloads.first(inner, PT_KE) or b"")
    chosen = proposals.choose_ike(props, [sa.group], ke[0] if ke else None, 8)
    if chosen is None or ke is None:
        return [_n(NO_PROPOSAL_CHOSEN)], None
    num, spi_peer, group = chosen
    if ke[0] != group:
        return [_n(INVALID_KE_PAYLOAD, group.to_bytes(2, "big"))], None
    if sa.request is not None and sa.request.kind == "rekey_child":
        # §2.25.2: not while a Child SA rekey of ours is in flight
        return [_n(TEMPORARY_FAILURE)], None
    kp = dh.KeyPair(group, eng.rng)
    g_ir = kp.shared(ke[1])
    if g_ir is None:
        return [_n(NO_PROPOSAL_CHOSEN)], None
    nr = eng.nonce()
    new = IkeSa(spi_peer, eng.new_spi(), False, sa.peer, sa.natt, now)
    _inherit(new, sa, ni, nr, keymat.skeyseed_rekey(sa.keys.sk_d, g_ir, ni, nr), now)
    eng.add_sa(new)
    pls = [
        (PT_SA, payloads.encode_sa(proposals.ike_chosen(num, group, new.spi_r))),
        (PT_NONCE, nr),
        (PT_KE, payloads.encode_ke(group, kp.public)),
    ]
    pls += eng.hook_add("rekey_response", new, now)
    if sa.state == state.REKEYING:
        # §2.8.2: simultaneous IKE SA rekeys; decided when ours completes
        sa.collision = (new, ni, nr)
        eng.log("ike: IKE SA rekey collision on %s" % sa.name())
        return pls, None
    return pls, _finish(eng, sa, new, False, ns, now)

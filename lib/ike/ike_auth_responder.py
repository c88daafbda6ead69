# IKE_AUTH as responder (RFC 7296 §1.2, §2.15): the peer's AUTH checked,
# INITIAL_CONTACT (§2.4), the first Child SA narrowed to our traffic
# selectors, a virtual IP from the pool (§2.19), and our response. The
# initiator's side and what both use are in ike.ike_auth; the engine loads
# this module only at the first IKE_AUTH request, so a device that only
# initiates never holds it.

from ike import keymat, payloads, proposals, state
from ike import ts as tsmod
from ike.const import (
    AUTH_SHARED_KEY_MIC,
    AUTHENTICATION_FAILED,
    INITIAL_CONTACT,
    NO_PROPOSAL_CHOSEN,
    PT_AUTH,
    PT_CP,
    PT_IDI,
    PT_IDR,
    PT_SA,
    PT_TSI,
    PT_TSR,
    TS_UNACCEPTABLE,
    notify_name,
)
from ike.ike_auth import _id_body, _n, _verify
from ike.sa import ChildSa


def _has_pool(cfg):
    t = cfg.extra.get("tunnel")
    return isinstance(t, dict) and t.get("pool") is not None


def on_request(eng, sa, m, inner, now):
    cfg = eng.cfg
    ns = payloads.notifies(inner) or []
    ident = _verify(eng, sa, inner, sa.init_req, sa.nr, sa.keys.sk_pi, PT_IDI)
    if ident is None:
        # §2.21.2: "If the error occurs on the responder, the notification
        # is returned in the protected response"; the half-open SA goes.
        eng.close(sa, "authentication of the peer failed", now)
        return [_n(AUTHENTICATION_FAILED)], None
    sa.peer_id = ident
    if [n for n in ns if n[0] == INITIAL_CONTACT]:
        # §2.4: "the receiving peer SHOULD delete all other IKE SAs with the
        # same authenticated identity" (the peer restarted and lost them).
        for other in eng.sa_list():
            if other is not sa and other.peer_id == ident and state.authenticated(other.state):
                eng.close(other, "replaced (INITIAL_CONTACT)", now)
    eng.established(sa, now)
    child = None
    child_pls = []
    props = payloads.decode_sa(payloads.first(inner, PT_SA) or b"")
    tsi_o = payloads.decode_ts(payloads.first(inner, PT_TSI) or b"")
    tsr_o = payloads.decode_ts(payloads.first(inner, PT_TSR) or b"")
    cp_pls = []
    peer_ts = cfg.ts_peer
    if _has_pool(cfg) and payloads.first(inner, PT_CP) is not None:
        # §2.19 / §3.15: an address from the pool for this identity, and
        # TSi narrowed to it (the device offers 0.0.0.0/0 or its subnet)
        from ike import config_payload

        ask, dns = config_payload.wants_address(payloads.first(inner, PT_CP))
        if ask:
            pool = config_payload.pool_of(eng)
            vip = pool.assign(ident)
            if vip is not None:
                cp_pls = [(PT_CP, config_payload.reply(vip, pool.dns if dns else ()))]
                # inside the configured ts_peer, or TS_UNACCEPTABLE below
                peer_ts = tsmod.narrow([tsmod.from_text(tsmod.ipv4_text(vip))], cfg.ts_peer)
                eng.log("ike: virtual IP %s assigned to %s" % (tsmod.ipv4_text(vip), sa.name()))
            else:
                eng.log("ike: address pool exhausted; no virtual IP for %s" % sa.name())
    if props is not None and tsi_o is not None and tsr_o is not None:
        chosen = proposals.choose_esp(props)
        tsi = tsmod.narrow(tsi_o, peer_ts)
        tsr = tsmod.narrow(tsr_o, cfg.ts_local)
        if chosen is None:
            child_pls = [_n(NO_PROPOSAL_CHOSEN)]
        elif not tsi or not tsr:
            child_pls = [_n(TS_UNACCEPTABLE)]
        else:
            num, spi_peer = chosen
            spi = eng.new_child_spi()
            ei, ii, er, ir = keymat.child_keys(sa.keys.sk_d, sa.ni, sa.nr)
            child = ChildSa(spi, int.from_bytes(spi_peer, "big"), (ei, ii, er, ir), tsr, tsi, False, now)
            child_pls = [
                (PT_SA, payloads.encode_sa(proposals.esp_chosen(num, spi.to_bytes(4, "big")))),
                (PT_TSI, payloads.encode_ts(tsi)),
                (PT_TSR, payloads.encode_ts(tsr)),
            ]
    if child is not None:
        eng.install_child(sa, child, now, False)
    elif child_pls:
        eng.event("child_failed", sa=sa.name(), reason=notify_name(payloads.decode_notify(child_pls[0][1])[0]))
    idr = _id_body(cfg.id_local)
    auth = keymat.psk_auth(cfg.psk, sa.init_resp, sa.ni, sa.keys.sk_pr, idr)
    # the engine adds the hook's notifies (ike_up) and sends the response
    return [(PT_IDR, idr), (PT_AUTH, payloads.encode_typed(AUTH_SHARED_KEY_MIC, auth))] + cp_pls + child_pls, ("ike_up", ns, child)

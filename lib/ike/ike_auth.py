# IKE_AUTH (RFC 7296 §1.2, §2.15) with a pre-shared key, and the first Child
# SA (ESP, tunnel mode) with traffic selectors from the configuration.
#
#   HDR, SK {IDi, [N(INITIAL_CONTACT)], [IDr], AUTH, SAi2, TSi, TSr, [N(hook)...]} -->
#                              <--  HDR, SK {IDr, AUTH, SAr2, TSi, TSr, [N(hook)...]}
#
# The hook adds its notifies to our first IKE_AUTH request (auth_request),
# and hears of the completed exchange once (ike_up: the peer's notifies and
# the Child SA), returning what goes into our IKE_AUTH response when we
# respond (docs/hook.md). The engine makes that call: on_request and
# on_response return the ("ike_up", notifies, child) event, on_request with
# our response's payloads.
#
# This module is the initiator's side and what both sides use (_verify,
# _id_body); the responder's on_request is ike.ike_auth_responder, loaded
# at the first IKE_AUTH request: a device that only initiates never holds
# it.

from ike import crypto, keymat, payloads, proposals
from ike import ts as tsmod
from ike.const import (
    AUTH_SHARED_KEY_MIC,
    ERROR_MAX,
    IKE_AUTH,
    INITIAL_CONTACT,
    PT_AUTH,
    PT_CP,
    PT_IDI,
    PT_IDR,
    PT_N,
    PT_SA,
    PT_TSI,
    PT_TSR,
    notify_name,
)
from ike.sa import ChildSa


def _id_body(ident):
    return payloads.encode_typed(ident[0], ident[1])


def _n(ntype, data=b""):
    return (PT_N, payloads.encode_notify(ntype, data))


def start(eng, sa, _kind, _arg, now):
    """Our IKE_AUTH request, right after IKE_SA_INIT (kind "auth")."""
    cfg = eng.cfg
    idi = _id_body(cfg.id_local)
    # §2.15: InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI
    auth = keymat.psk_auth(cfg.psk, sa.init_req, sa.nr, sa.keys.sk_pi, idi)
    spi = eng.new_child_spi()
    pls = [(PT_IDI, idi)]
    # §2.4: INITIAL_CONTACT "MAY be sent ... when it wants the other side to
    # delete all other IKE SAs it has with it": when we hold no other SA
    # with this peer (after a reboot we hold none).
    others = [s for s in eng.sa_list() if s is not sa and s.up() and s.peer[0] == sa.peer[0]]
    if cfg.initial_contact and not others:
        pls.append(_n(INITIAL_CONTACT))
    pls.append((PT_IDR, _id_body(cfg.id_peer)))
    pls.append((PT_AUTH, payloads.encode_typed(AUTH_SHARED_KEY_MIC, auth)))
    if _wants_vip(cfg):
        # §2.19: CP(CFG_REQUEST) after AUTH; only then is the module loaded
        from ike import config_payload

        pls.append((PT_CP, config_payload.request(config_payload.initiator_wants(cfg)[1])))
    pls.append((PT_SA, payloads.encode_sa(proposals.esp_offer(spi.to_bytes(4, "big")))))
    pls.append((PT_TSI, payloads.encode_ts(cfg.ts_local)))
    pls.append((PT_TSR, payloads.encode_ts(cfg.ts_peer)))
    pls += eng.hook_add("auth_request", sa, now)
    eng.send_request(sa, "auth", IKE_AUTH, pls, spi, now)


def _wants_vip(cfg):
    t = cfg.extra.get("tunnel")
    return isinstance(t, dict) and t.get("virtual_ip") is True


def _cfg_reply(eng, sa, inner):
    """§3.15: the virtual IP (and DNS servers) the responder assigned, kept
    on the engine for ike.tunnel; None when the reply assigned none."""
    from ike import config_payload

    body = payloads.first(inner, PT_CP)
    got = config_payload.parse_reply(body) if body is not None else None
    if got is None or got[0] is None:
        eng.virtual_ip = None
        eng.log("ike: no virtual IP assigned under %s (no usable CP(CFG_REPLY))" % sa.name())
        return
    eng.virtual_ip = got[0]
    eng.virtual_dns = got[1]
    eng.event("virtual_ip", sa=sa.name(), addr=tsmod.ipv4_text(got[0]), dns=[tsmod.ipv4_text(d) for d in got[1]])
    eng.log("ike: virtual IP %s assigned under %s (DNS %s)" % (tsmod.ipv4_text(got[0]), sa.name(), ",".join(tsmod.ipv4_text(d) for d in got[1]) or "-"))


def _verify(eng, sa, inner, signed_message, nonce, sk_p, id_kind):
    """The peer's ID and AUTH payloads against the configuration: the
    decoded ID, or None when authentication fails."""
    idb = payloads.first(inner, id_kind)
    authb = payloads.first(inner, PT_AUTH)
    if idb is None or authb is None:
        return None
    ident = payloads.decode_typed(idb)
    auth = payloads.decode_typed(authb)
    if ident is None or auth is None or auth[0] != AUTH_SHARED_KEY_MIC:
        return None
    if ident != eng.cfg.id_peer:
        return None
    want = keymat.psk_auth(eng.cfg.psk, signed_message, nonce, sk_p, idb)
    if not crypto.ct_equal(auth[1], want):
        return None
    return ident


def on_response(eng, sa, req, m, inner, now):
    cfg = eng.cfg
    ns = payloads.notifies(inner) or []
    # §2.15: ResponderSignedOctets = RealMessage2 | NonceIData | MACedIDForR
    ident = _verify(eng, sa, inner, sa.init_resp, sa.ni, sa.keys.sk_pr, PT_IDR)
    if ident is None:
        errs = [n for n in ns if n[0] <= ERROR_MAX]
        why = ("peer refused IKE_AUTH: %s" % notify_name(errs[0][0])) if errs else "authentication of the peer failed"
        eng.close(sa, why, now)
        return None
    sa.peer_id = ident
    # The two IKE_SA_INIT messages were kept for the AUTH payloads alone
    # (§2.15): an initiator needs them no more once the peer's AUTH is
    # verified (a responder keeps its answer for retransmissions).
    sa.init_req = sa.init_resp = None
    if _wants_vip(cfg):
        _cfg_reply(eng, sa, inner)
    eng.established(sa, now)
    # The Child SA (§1.2): the responder's choice must be within our offer.
    props = payloads.decode_sa(payloads.first(inner, PT_SA) or b"")
    tsi = payloads.decode_ts(payloads.first(inner, PT_TSI) or b"")
    tsr = payloads.decode_ts(payloads.first(inner, PT_TSR) or b"")
    spi_out = proposals.check_esp_answer(props) if props is not None else None
    if spi_out is None or tsi is None or tsr is None or not tsmod.within(tsi, cfg.ts_local) or not tsmod.within(tsr, cfg.ts_peer):
        errs = [notify_name(n[0]) for n in ns if n[0] <= ERROR_MAX]
        eng.event("child_failed", sa=sa.name(), reason=",".join(errs) or "unacceptable answer")
        eng.log("ike: no Child SA under %s (%s)" % (sa.name(), ",".join(errs) or "unacceptable answer"))
        return ("ike_up", ns, None)
    # §2.17: the first Child SA is keyed with the IKE_SA_INIT nonces.
    ei, ii, er, ir = keymat.child_keys(sa.keys.sk_d, sa.ni, sa.nr)
    child = ChildSa(req.ctx, int.from_bytes(spi_out, "big"), (er, ir, ei, ii), tsi, tsr, True, now)
    eng.install_child(sa, child, now, False)
    return ("ike_up", ns, child)

# IKE_SA_INIT as responder (RFC 7296 §1.2): the proposal chosen, our KE
# and nonce, NAT detection (§2.23), COOKIE when busy (§2.6),
# INVALID_KE_PAYLOAD for another group (§1.2), and the caps on half-open
# SAs (issue 13 §2). ike.ike_sa_init has the initiator's side; the engine
# imports this module only at the first IKE_SA_INIT request it accepts, so
# a device that only initiates never holds it.

import struct

from ike import crypto, dh, keymat, message, payloads, proposals, state
from ike.const import (
    COOKIE,
    FLAG_R,
    IKE_SA_INIT,
    INVALID_KE_PAYLOAD,
    INVALID_SYNTAX,
    NAT_DETECTION_SOURCE_IP,
    NO_PROPOSAL_CHOSEN,
    NONCE_MAX,
    NONCE_MIN,
    PT_KE,
    PT_N,
    PT_NONCE,
    PT_SA,
)
from ike.ike_sa_init import ZERO_SPI, ip4, nat_detect, nat_payloads
from ike.sa import IkeSa

# Version octet in front of our cookies (§2.6 "VersionIDofSecret").
COOKIE_VERSION = 1




def _cookie(eng, ni, src, spi_i):
    # §2.6: Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)
    return bytes((COOKIE_VERSION,)) + crypto.sha256(ni + ip4(src[0]) + spi_i + eng.cookie_secret)


def _answer(eng, m, src, natt, ntype, data=b""):
    pls = [(PT_N, payloads.encode_notify(ntype, data))]
    eng.log_msg("out", IKE_SA_INIT, True, 0, pls, src)
    eng.emit(message.build(m.spi_i, ZERO_SPI, IKE_SA_INIT, FLAG_R, 0, pls), src, natt)


def _half_open(eng, ip=None):
    """Our half-open IKE SAs as responder (IKE_AUTH not yet received),
    oldest first; only those from `ip` when given."""
    out = [sa for sa in eng.sa_list() if sa.state == state.INIT_DONE and not sa.initiator and (ip is None or sa.peer[0] == ip)]
    out.sort(key=lambda sa: sa.idx)
    return out


def _make_room(eng, ip, now):
    """The hard caps on half-open IKE SAs (config half_open_per_source,
    half_open_max): drop the oldest until a new one fits. A COOKIE only
    shows that the source can receive, so without a cap one address that
    echoes every COOKIE holds as many SAs (each a D-H computation and
    about 2 KB) as it sends requests (issue 13 §2)."""
    cfg = eng.cfg
    for ip_, cap in ((ip, cfg.half_open_per_source), (None, cfg.half_open_max)):
        held = _half_open(eng, ip_)
        while len(held) >= cap:
            victim = held.pop(0)
            eng.count("half_open_dropped")
            eng.log("ike: half-open IKE SA %s from %s dropped: %s cap of %d reached" % (victim.name(), victim.peer[0], "per-source" if ip_ else "global", cap))
            eng.close(victim, "half-open IKE SA dropped for a newer one (cap)", now)


def on_request(eng, m, src, natt, now):
    """A peer's IKE_SA_INIT request (the engine checked accept_ike_sa_init
    before it loaded this module)."""
    cfg = eng.cfg
    # §3.1: the initiator's SPI is never zero; IKE_SA_INIT is Message ID 0
    if m.msg_id != 0 or m.spi_i == ZERO_SPI:
        eng.count("dropped_unexpected")
        return
    key = (m.spi_i, src[0], src[1])
    old = eng.half_open.get(key)
    if old is not None:
        # §2.1: a retransmitted request gets the same answer again
        if old.init_req == m.buf and old.init_resp is not None:
            eng.count("answered_retransmit")
            eng.emit(old.init_resp, src, natt)
        else:
            eng.count("dropped_unexpected")
        return
    body = m.bodies()
    ns = payloads.notifies(body)
    props = payloads.decode_sa(payloads.first(body, PT_SA) or b"")
    ke = payloads.decode_ke(payloads.first(body, PT_KE) or b"")
    ni = payloads.first(body, PT_NONCE)
    if ns is None or props is None or ke is None or ni is None or not NONCE_MIN <= len(ni) <= NONCE_MAX:
        eng.count("dropped_malformed")
        return
    eng.log_msg("in", IKE_SA_INIT, False, 0, body, src)
    ni = bytes(ni)
    busy = len([s for s in eng.sa_list() if s.state == state.INIT_DONE]) >= cfg.cookie_threshold
    if busy:
        want = _cookie(eng, ni, src, m.spi_i)
        got = None
        if body[0][0] == PT_N:
            n = payloads.decode_notify(body[0][2])
            if n is not None and n[0] == COOKIE:
                got = n[3]
        if got is None or not crypto.ct_equal(got, want):
            # §2.6: answer with a cookie and keep no state
            _answer(eng, m, src, natt, COOKIE, want)
            return
    chosen = proposals.choose_ike(props, cfg.dh_groups, ke[0])
    if chosen is None:
        _answer(eng, m, src, natt, NO_PROPOSAL_CHOSEN)
        return
    num, _spi, group = chosen
    if ke[0] != group:
        # §1.2: "the responder MUST reject the request and indicate its
        # preferred Diffie-Hellman group in the INVALID_KE_PAYLOAD"
        _answer(eng, m, src, natt, INVALID_KE_PAYLOAD, struct.pack(">H", group))
        return
    kp = dh.KeyPair(group, eng.rng)
    g_ir = kp.shared(ke[1])
    if g_ir is None:
        _answer(eng, m, src, natt, INVALID_SYNTAX)
        return
    sa = IkeSa(m.spi_i, eng.new_spi(), False, (src[0], src[1]), natt, now)
    state.set_ike(sa, "init_answered")
    sa.group = group
    sa.ni = ni
    sa.nr = eng.nonce()
    sa.init_req = m.buf
    sa.peer_msg_id = 1
    sa.keys = keymat.IkeKeys(keymat.skeyseed(sa.ni, sa.nr, g_ir), sa.ni, sa.nr, sa.spi_i, sa.spi_r)
    peer_nat, our_nat = nat_detect(ns, sa.spi_i, ZERO_SPI, src, eng.ours(natt))
    sa.nat_detected = peer_nat or our_nat or cfg.nat_t == "force"
    pls = [
        (PT_SA, payloads.encode_sa(proposals.ike_chosen(num, group))),
        (PT_KE, payloads.encode_ke(group, kp.public)),
        (PT_NONCE, sa.nr),
    ]
    if [n for n in ns if n[0] == NAT_DETECTION_SOURCE_IP]:
        pls += nat_payloads(eng, sa, sa.spi_r, sa.peer, natt)
    data = message.build(sa.spi_i, sa.spi_r, IKE_SA_INIT, FLAG_R, 0, pls)
    sa.init_resp = data
    _make_room(eng, src[0], now)
    eng.add_sa(sa)
    eng.half_open[key] = sa
    eng.log_msg("out", IKE_SA_INIT, True, 0, pls, src)
    eng.emit(data, src, natt)

# IKE_SA_INIT (RFC 7296 §1.2): proposals, Diffie-Hellman, nonces, NAT
# detection (§2.23), COOKIE (§2.6) and INVALID_KE_PAYLOAD (§1.2), both roles.
#
#   Initiator                         Responder
#   HDR, [N(COOKIE),] SAi1, KEi, Ni,
#        N(NAT_D_SRC), N(NAT_D_DST) -->
#                                <--  HDR, SAr1, KEr, Nr, N(NAT_D_SRC), N(NAT_D_DST)
#                                <--  HDR, N(COOKIE)                (busy, §2.6)
#                                <--  HDR, N(INVALID_KE_PAYLOAD)    (other group)
#
# The messages are unprotected; the AUTH payloads of IKE_AUTH later sign
# them (§2.15), which is why both are kept byte for byte.

import struct

from ike import crypto, dh, keymat, message, payloads, proposals, state
from ike.const import (
    COOKIE,
    COOKIE_MAX,
    FLAG_I,
    FLAG_R,
    IKE_SA_INIT,
    INVALID_KE_PAYLOAD,
    INVALID_SYNTAX,
    ERROR_MAX,
    NAT_DETECTION_DESTINATION_IP,
    NAT_DETECTION_SOURCE_IP,
    NO_PROPOSAL_CHOSEN,
    NONCE_MAX,
    NONCE_MIN,
    PT_KE,
    PT_N,
    PT_NONCE,
    PT_SA,
    notify_name,
)
from ike.sa import IkeSa
from ike.ts import ipv4

ZERO_SPI = bytes(8)
# How often an initiator follows a COOKIE or INVALID_KE_PAYLOAD answer
# before it gives up (either can be forged, §2.6 and §2.21.1).
MAX_RESTARTS = 3
# Version octet in front of our cookies (§2.6 "VersionIDofSecret").
COOKIE_VERSION = 1


def _nat_hash(spi_i, spi_r, addr):
    # §2.23: SHA-1(SPIi | SPIr | IP address | port), SPIr zero in the request
    return crypto.sha1(spi_i + spi_r + ipv4(addr[0]) + struct.pack(">H", addr[1]))


def _nat_payloads(eng, sa, spi_r, peer, natt):
    src = _nat_hash(sa.spi_i, spi_r, eng.ours(natt))
    if eng.cfg.nat_t == "force":
        # Pretend to be behind a NAT so both sides move to UDP encapsulation
        # (strongSwan's encap=yes does the same): a source hash that cannot
        # match.
        src = eng.rng(20)
    return [
        (PT_N, payloads.encode_notify(NAT_DETECTION_SOURCE_IP, src)),
        (PT_N, payloads.encode_notify(NAT_DETECTION_DESTINATION_IP, _nat_hash(sa.spi_i, spi_r, peer))),
    ]


def _nat_detect(ns, spi_i, spi_r, sender, receiver):
    """(peer behind NAT, we behind NAT) from the peer's NAT_D notifies; both
    False when the peer sent none (it does not do NAT-T)."""
    srcs = [n[3] for n in ns if n[0] == NAT_DETECTION_SOURCE_IP]
    dsts = [n[3] for n in ns if n[0] == NAT_DETECTION_DESTINATION_IP]
    if not srcs or not dsts:
        return False, False
    want_src = _nat_hash(spi_i, spi_r, sender)
    want_dst = _nat_hash(spi_i, spi_r, receiver)
    return want_src not in srcs, want_dst not in dsts


# -- initiator -----------------------------------------------------------------


def start(eng, _sa, _kind, _arg, now):
    """A new IKE SA of ours (the engine's table: kind "init")."""
    cfg = eng.cfg
    natt = cfg.nat_t == "always"  # §2.23: an initiator may start on 4500
    peer = (cfg.peer_addr, cfg.peer_natt_port if natt else cfg.peer_port)
    sa = IkeSa(eng.new_spi(), ZERO_SPI, True, peer, natt, now)
    state.set_ike(sa, "init_sent")
    sa.group = cfg.dh_groups[0]
    sa.ni = eng.nonce()
    sa.dh = dh.KeyPair(sa.group, eng.rng)
    eng.event("initiating", sa=sa.name(), peer=peer)
    # held only once its request is out: an SA in INIT_SENT without its
    # request (a MemoryError in _send) would never time out and would block
    # every later initiation
    _send(eng, sa, now)
    eng.add_sa(sa)


def _send(eng, sa, now):
    pls = []
    if sa.cookie is not None:
        # §2.6: "the initiator MUST retry the IKE_SA_INIT with a Notify
        # payload of type COOKIE ... as the first payload and all other
        # payloads unchanged"
        pls.append((PT_N, payloads.encode_notify(COOKIE, sa.cookie)))
    pls.append((PT_SA, payloads.encode_sa(proposals.ike_offer(eng.cfg.dh_groups))))
    pls.append((PT_KE, payloads.encode_ke(sa.group, sa.dh.public)))
    pls.append((PT_NONCE, sa.ni))
    pls += _nat_payloads(eng, sa, ZERO_SPI, sa.peer, sa.natt)
    data = message.build(sa.spi_i, ZERO_SPI, IKE_SA_INIT, FLAG_I, 0, pls)
    sa.init_req = data
    eng.log_msg("out", IKE_SA_INIT, False, 0, pls, sa.peer)
    eng.start_request(sa, "init", IKE_SA_INIT, 0, data, None, now)


def on_response(eng, sa, m, src, natt, now):
    if m.msg_id != 0 or sa.request is None or sa.request.kind != "init":
        eng.count("dropped_unexpected")
        return
    pls = m.bodies()
    ns = payloads.notifies(pls)
    if ns is None:
        eng.count("dropped_malformed")
        return
    eng.log_msg("in", IKE_SA_INIT, True, 0, pls, src)
    if m.spi_r == ZERO_SPI:
        _restart(eng, sa, ns, now)
        return
    props = payloads.decode_sa(payloads.first(pls, PT_SA) or b"")
    ke = payloads.decode_ke(payloads.first(pls, PT_KE) or b"")
    nr = payloads.first(pls, PT_NONCE)
    if props is None or ke is None or nr is None or not NONCE_MIN <= len(nr) <= NONCE_MAX:
        errs = [n for n in ns if n[0] <= ERROR_MAX]
        if errs:
            eng.close(sa, "peer refused IKE_SA_INIT: %s" % notify_name(errs[0][0]), now)
        else:
            eng.count("dropped_malformed")
        return
    chosen = proposals.check_ike_answer(props, [sa.group])
    if chosen is None or ke[0] != sa.group:
        eng.close(sa, "peer chose a proposal we did not offer", now)
        return
    g_ir = sa.dh.shared(ke[1])
    if g_ir is None:
        eng.close(sa, "peer's KE payload is not a valid group element", now)
        return
    peer_nat, our_nat = _nat_detect(ns, sa.spi_i, m.spi_r, src, eng.ours(natt))
    sa.spi_r = m.spi_r
    sa.nr = bytes(nr)
    sa.init_resp = m.buf
    sa.keys = keymat.IkeKeys(keymat.skeyseed(sa.ni, sa.nr, g_ir), sa.ni, sa.nr, sa.spi_i, sa.spi_r)
    sa.dh = None
    sa.request = None
    sa.my_msg_id = 1
    if peer_nat or our_nat or eng.cfg.nat_t == "force":
        sa.nat_detected = True
        if not sa.natt:
            # §2.23: "the initiator MUST switch to port 4500 ... for IKE_AUTH"
            sa.natt = True
            sa.peer = (sa.peer[0], eng.cfg.peer_natt_port)
            eng.log("ike: NAT detected (%s); IKE SA %s moves to UDP encapsulation, port %d" % ("peer" if peer_nat else "us" if our_nat else "forced", sa.name(), sa.peer[1]))
    state.set_ike(sa, "init_done")
    eng.queue(sa, "auth", None)  # IKE_AUTH next; the engine starts it


def _restart(eng, sa, ns, now):
    """An answer without a responder SPI: COOKIE or INVALID_KE_PAYLOAD
    (unprotected, so possibly forged: bounded retries), or an error."""
    for ntype, _proto, _spi, data in ns:
        if ntype == COOKIE and 1 <= len(data) <= COOKIE_MAX:
            if sa.cookie_tries >= MAX_RESTARTS:
                eng.close(sa, "too many COOKIE requests", now)
                return
            sa.cookie_tries += 1
            sa.cookie = data
            eng.log("ike: responder wants a COOKIE; retrying IKE_SA_INIT")
            _send(eng, sa, now)
            return
        if ntype == INVALID_KE_PAYLOAD and len(data) == 2:
            group = (data[0] << 8) | data[1]
            # §1.2: retry with the group the responder selected, if we
            # offered it.
            if group in eng.cfg.dh_groups and group != sa.group and sa.cookie_tries < MAX_RESTARTS:
                sa.cookie_tries += 1
                sa.group = group
                sa.dh = dh.KeyPair(group, eng.rng)
                eng.log("ike: responder wants D-H group %d; retrying IKE_SA_INIT" % group)
                _send(eng, sa, now)
            else:
                eng.close(sa, "responder wants D-H group %d, which we do not offer" % group, now)
            return
    errs = [n for n in ns if n[0] <= ERROR_MAX]
    if errs:
        eng.close(sa, "peer refused IKE_SA_INIT: %s" % notify_name(errs[0][0]), now)
    else:
        eng.count("dropped_unexpected")


# -- responder -----------------------------------------------------------------


def _cookie(eng, ni, src, spi_i):
    # §2.6: Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)
    return bytes((COOKIE_VERSION,)) + crypto.sha256(ni + ipv4(src[0]) + spi_i + eng.cookie_secret)


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
    cfg = eng.cfg
    if not cfg.accept_ike_sa_init:
        # A device that only initiates answers no IKE_SA_INIT (config
        # accept_ike_sa_init): silence, no state, no exponentiation.
        eng.count("refused_ike_sa_init")
        return
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
    peer_nat, our_nat = _nat_detect(ns, sa.spi_i, ZERO_SPI, src, eng.ours(natt))
    sa.nat_detected = peer_nat or our_nat or cfg.nat_t == "force"
    pls = [
        (PT_SA, payloads.encode_sa(proposals.ike_chosen(num, group))),
        (PT_KE, payloads.encode_ke(group, kp.public)),
        (PT_NONCE, sa.nr),
    ]
    if [n for n in ns if n[0] == NAT_DETECTION_SOURCE_IP]:
        pls += _nat_payloads(eng, sa, sa.spi_r, sa.peer, natt)
    data = message.build(sa.spi_i, sa.spi_r, IKE_SA_INIT, FLAG_R, 0, pls)
    sa.init_resp = data
    _make_room(eng, src[0], now)
    eng.add_sa(sa)
    eng.half_open[key] = sa
    eng.log_msg("out", IKE_SA_INIT, True, 0, pls, src)
    eng.emit(data, src, natt)

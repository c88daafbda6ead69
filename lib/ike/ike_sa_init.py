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
#
# This module is the initiator's side (and the NAT detection both sides
# use); the responder's is ike.ike_sa_init_responder, which the engine
# imports at the first IKE_SA_INIT request it accepts: a device that only
# initiates never loads it.

import struct

from ike import crypto, dh, keymat, message, payloads, proposals, state
from ike.const import (
    COOKIE,
    COOKIE_MAX,
    FLAG_I,
    IKE_SA_INIT,
    INVALID_KE_PAYLOAD,
    ERROR_MAX,
    NAT_DETECTION_DESTINATION_IP,
    NAT_DETECTION_SOURCE_IP,
    NONCE_MAX,
    NONCE_MIN,
    PT_KE,
    PT_N,
    PT_NONCE,
    PT_SA,
    notify_name,
)
from ike.sa import IkeSa

ZERO_SPI = bytes(8)
# How often an initiator follows a COOKIE or INVALID_KE_PAYLOAD answer
# before it gives up (either can be forged, §2.6 and §2.21.1).
MAX_RESTARTS = 3


def ip4(text):
    """A dotted quad from a socket or the checked configuration (the NAT
    hashes and the responder's cookies) -> 4 bytes. Not ike.ts.ipv4, which
    checks untrusted text: this module does without ike.ts, so a handshake's
    D-H runs with one module fewer in the heap."""
    return bytes([int(p) for p in text.split(".")])


def _nat_hash(spi_i, spi_r, addr):
    # §2.23: SHA-1(SPIi | SPIr | IP address | port), SPIr zero in the request
    return crypto.sha1(spi_i + spi_r + ip4(addr[0]) + struct.pack(">H", addr[1]))


def nat_payloads(eng, sa, spi_r, peer, natt):
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


def nat_detect(ns, spi_i, spi_r, sender, receiver):
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
    pls += nat_payloads(eng, sa, ZERO_SPI, sa.peer, sa.natt)
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
    peer_nat, our_nat = nat_detect(ns, sa.spi_i, m.spi_r, src, eng.ours(natt))
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

# The one suite the engine speaks, as SA payload proposals (RFC 7296 §3.3),
# and how a proposal from the peer is chosen or checked.
#
#   IKE: ENCR_AES_CBC (256-bit key), PRF_HMAC_SHA2_256, AUTH_HMAC_SHA2_256_128,
#        D-H groups as configured (default 31, Curve25519, then 14, MODP-2048;
#        15 too when configured), one proposal with a D-H transform each
#   ESP: ENCR_AES_CBC (256-bit key), AUTH_HMAC_SHA2_256_128, no ESN; no PFS
#        group (Child SAs are keyed from SK_d, RFC 7296 §2.17)

from ike.const import (
    AUTH_HMAC_SHA2_256_128,
    ENCR_AES_CBC,
    ESN_NONE,
    PRF_HMAC_SHA2_256,
    PROTO_ESP,
    PROTO_IKE,
    TRANS_DH,
    TRANS_ENCR,
    TRANS_ESN,
    TRANS_INTEG,
    TRANS_PRF,
)

AES_KEY_BITS = 256

_IKE_FIXED = ((TRANS_ENCR, ENCR_AES_CBC, AES_KEY_BITS), (TRANS_PRF, PRF_HMAC_SHA2_256, None), (TRANS_INTEG, AUTH_HMAC_SHA2_256_128, None))
_ESP_FIXED = ((TRANS_ENCR, ENCR_AES_CBC, AES_KEY_BITS), (TRANS_INTEG, AUTH_HMAC_SHA2_256_128, None), (TRANS_ESN, ESN_NONE, None))


def ike_offer(groups, spi=b""):
    """Our IKE proposal: one proposal, every configured group as a D-H
    transform (preferred first). `spi` is empty in IKE_SA_INIT and our new
    8-octet SPI in an IKE SA rekey (§3.3.1)."""
    trans = list(_IKE_FIXED)
    for g in groups:
        trans.append((TRANS_DH, g, None))
    return [(1, PROTO_IKE, spi, trans)]


def esp_offer(spi):
    return [(1, PROTO_ESP, spi, list(_ESP_FIXED))]


def _types(trans):
    out = {}
    for t in trans:
        out.setdefault(t[0], []).append(t)
    return out


def choose_ike(proposals, groups, ke_group=None, spi_len=0):
    """Pick an IKE proposal we accept. Returns (proposal number, peer's SPI,
    group) or None.

    §3.3.6: a proposal with a transform type we do not know is unusable; a
    transform with an attribute we do not understand is rejected. Among
    acceptable groups, the one the peer's KE payload used wins (so a
    retried IKE_SA_INIT converges), then our order."""
    for num, proto, spi, trans in proposals:
        if proto != PROTO_IKE or len(spi) != spi_len:
            continue
        by = _types(trans)
        if [k for k in by if k not in (TRANS_ENCR, TRANS_PRF, TRANS_INTEG, TRANS_DH)]:
            continue
        if not _has(by, _IKE_FIXED):
            continue
        offered = [t[1] for t in by.get(TRANS_DH, []) if t[2] is None]
        pick = None
        if ke_group is not None and ke_group in offered and ke_group in groups:
            pick = ke_group
        else:
            for g in groups:
                if g in offered:
                    pick = g
                    break
        if pick is None:
            continue
        return num, spi, pick
    return None


def ike_chosen(num, groups_pick, spi=b""):
    """The single-transform proposal a responder sends back."""
    return [(num, PROTO_IKE, spi, list(_IKE_FIXED) + [(TRANS_DH, groups_pick, None)])]


def check_ike_answer(proposals, groups, spi_len=0):
    """An initiator checks the responder's choice: exactly one proposal, one
    transform of each type, all among what we offered (§2.7, §3.3.6).
    Returns (peer SPI, group) or None."""
    if len(proposals) != 1:
        return None
    num, proto, spi, trans = proposals[0]
    if proto != PROTO_IKE or len(spi) != spi_len:
        return None
    by = _types(trans)
    for k in by:
        if len(by[k]) != 1:
            return None
    if sorted(by) != [TRANS_ENCR, TRANS_PRF, TRANS_INTEG, TRANS_DH]:
        return None
    if not _has(by, _IKE_FIXED):
        return None
    dh = by[TRANS_DH][0]
    if dh[1] not in groups or dh[2] is not None:
        return None
    return spi, dh[1]


def choose_esp(proposals):
    """Pick an ESP proposal: (proposal number, peer's inbound SPI) or None.
    A proposal that demands a D-H group (PFS) or ESN is not acceptable."""
    for num, proto, spi, trans in proposals:
        if proto != PROTO_ESP or len(spi) != 4:
            continue
        by = _types(trans)
        if [k for k in by if k not in (TRANS_ENCR, TRANS_INTEG, TRANS_ESN, TRANS_DH)]:
            continue
        if not _has(by, ((TRANS_ENCR, ENCR_AES_CBC, AES_KEY_BITS), (TRANS_INTEG, AUTH_HMAC_SHA2_256_128, None))):
            continue
        if TRANS_ESN in by and not _has(by, ((TRANS_ESN, ESN_NONE, None),)):
            continue
        if TRANS_DH in by and not _has(by, ((TRANS_DH, 0, None),)):
            continue  # PFS required by the peer: we do not do it
        return num, spi
    return None


def esp_chosen(num, spi):
    return [(num, PROTO_ESP, spi, list(_ESP_FIXED))]


def check_esp_answer(proposals):
    """Responder's ESP choice: one proposal within our offer. Peer SPI or None."""
    if len(proposals) != 1:
        return None
    num, proto, spi, trans = proposals[0]
    if proto != PROTO_ESP or len(spi) != 4:
        return None
    for t in trans:
        if t not in _ESP_FIXED:
            return None
    by = _types(trans)
    if TRANS_ENCR not in by or TRANS_INTEG not in by:
        return None
    for k in by:
        if len(by[k]) != 1:
            return None
    return spi


def _has(by, wanted):
    for w in wanted:
        if w not in by.get(w[0], []):
            return False
    return True

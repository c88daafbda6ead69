# Key material (RFC 7296 §2.13-2.15, §2.17, §2.18) for the one suite the
# engine speaks: PRF_HMAC_SHA2_256, ENCR_AES_CBC-256, AUTH_HMAC_SHA2_256_128
# for the IKE SA, and ENCR_AES_CBC-256 with AUTH_HMAC_SHA2_256_128 for ESP.

from ike import crypto

PRF_LEN = 32  # HMAC-SHA-256 output and preferred key size (RFC 4868 §2.1.2)
ENCR_KEY_LEN = 32  # AES-256
INTEG_KEY_LEN = 32  # HMAC-SHA-256-128 key (RFC 4868 §2.1.1)
ICV_LEN = 16  # HMAC-SHA-256 truncated to 128 bits (RFC 4868 §2.3)
BLOCK = 16  # AES block, and the IV length of AES-CBC (RFC 3602 §3)

# RFC 7296 §2.15: "the fixed string 'Key Pad for IKEv2' (17 ASCII
# characters without null termination)".
KEY_PAD = b"Key Pad for IKEv2"


def prf(key, data):
    return crypto.hmac_sha256(key, data)


def prf_plus(key, seed, length):
    """RFC 7296 §2.13:
        prf+ (K,S) = T1 | T2 | T3 | T4 | ...
        T1 = prf (K, S | 0x01)
        T2 = prf (K, T1 | S | 0x02) ...
    "The prf+ function is not defined beyond 255 times the size of the prf
    function output." K's padded blocks are computed once for all rounds
    (crypto.hmac_key).
    """
    if length > 255 * PRF_LEN:
        raise ValueError("prf+ is not defined beyond 255 rounds")
    k = crypto.hmac_key(key)
    out = bytearray()
    t = b""
    n = 1
    while len(out) < length:
        t = k.digest(t + seed + bytes((n,)))
        out += t
        n += 1
    return bytes(out[:length])


def skeyseed(ni, nr, g_ir):
    """RFC 7296 §2.14: SKEYSEED = prf(Ni | Nr, g^ir). HMAC takes the whole
    nonce concatenation as its key (RFC 4868 §2.1.2 keeps it variable)."""
    return prf(ni + nr, g_ir)


def skeyseed_rekey(sk_d_old, g_ir, ni, nr):
    """RFC 7296 §2.18: SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)."""
    return prf(sk_d_old, g_ir + ni + nr)


class IkeKeys:
    """{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
        = prf+ (SKEYSEED, Ni | Nr | SPIi | SPIr)     (RFC 7296 §2.14)
    mac_ai / mac_ar: SK_ai / SK_ar as crypto.hmac_key, made once for every
    message of the SA (ike.message)."""

    __slots__ = ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr", "mac_ai", "mac_ar")

    def __init__(self, seed, ni, nr, spi_i, spi_r):
        n = 3 * PRF_LEN + 2 * INTEG_KEY_LEN + 2 * ENCR_KEY_LEN
        km = prf_plus(seed, ni + nr + spi_i + spi_r, n)
        i = 0
        parts = []
        for ln in (PRF_LEN, INTEG_KEY_LEN, INTEG_KEY_LEN, ENCR_KEY_LEN, ENCR_KEY_LEN, PRF_LEN, PRF_LEN):
            parts.append(km[i : i + ln])
            i += ln
        self.sk_d, self.sk_ai, self.sk_ar, self.sk_ei, self.sk_er, self.sk_pi, self.sk_pr = parts
        self.mac_ai = crypto.hmac_key(self.sk_ai)
        self.mac_ar = crypto.hmac_key(self.sk_ar)

    def outbound(self, initiator):
        """(encryption key, integrity key as crypto.hmac_key) for messages
        we send."""
        if initiator:
            return self.sk_ei, self.mac_ai
        return self.sk_er, self.mac_ar

    def inbound(self, initiator):
        if initiator:
            return self.sk_er, self.mac_ar
        return self.sk_ei, self.mac_ai


def child_keys(sk_d, ni, nr, g_ir=None):
    """RFC 7296 §2.17: KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr), taken as
    the encryption key then the integrity key of the SA carrying data from
    the initiator to the responder, then the same for the other direction.
    Returns (encr_i2r, integ_i2r, encr_r2i, integ_r2i); `ni`/`nr` are the
    nonces of the exchange that created the Child SA (IKE_AUTH: those of
    IKE_SA_INIT)."""
    seed = (g_ir or b"") + ni + nr
    km = prf_plus(sk_d, seed, 2 * (ENCR_KEY_LEN + INTEG_KEY_LEN))
    a = ENCR_KEY_LEN
    b = a + INTEG_KEY_LEN
    c = b + ENCR_KEY_LEN
    return km[0:a], km[a:b], km[b:c], km[c:]


def psk_auth(psk, signed_message, nonce_peer, sk_p, id_body):
    """RFC 7296 §2.15, shared key:
        AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)
    where for the initiator
        InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI
        MACedIDForI = prf(SK_pi, RestOfInitIDPayload)
    and symmetrically for the responder (RealMessage2 | NonceIData |
    prf(SK_pr, RestOfRespIDPayload)). `id_body` is the ID payload body after
    the generic header (ID Type, three RESERVED octets, data)."""
    octets = signed_message + nonce_peer + prf(sk_p, id_body)
    return prf(prf(psk, KEY_PAD), octets)

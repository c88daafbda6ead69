# IKE messages (RFC 7296 §3.1-3.2, §3.14): the header, the payload chain,
# and the Encrypted (SK) payload that protects everything after IKE_SA_INIT.
#
# Every length from the network is checked against the datagram before it is
# used; anything malformed gives None (design principle 5), never an
# exception. Payload bodies are decoded by ike.payloads.

import struct

from ike import crypto
from ike.const import (
    FLAG_R,
    GEN_HDR_LEN,
    IKE_HDR_LEN,
    IKE_VERSION,
    PT_NONE,
    PT_SK,
    PT_SKF,
)
from ike.keymat import BLOCK, ICV_LEN

# Cap on payloads in one message or one SK payload: bounds the work per
# datagram. Real messages have a dozen at most (strongSwan's IKE_AUTH with
# every notify it knows has about 15).
MAX_PAYLOADS = 48


class Message:
    """A parsed IKE message. `payloads` is a list of (type, critical, body);
    for a protected message it ends with (PT_SK, critical, body) and
    `sk_next` holds the type of the first payload inside the encryption."""

    __slots__ = ("buf", "spi_i", "spi_r", "first", "exchange", "flags", "msg_id", "payloads", "sk_next")

    def is_response(self):
        return bool(self.flags & FLAG_R)

    def is_protected(self):
        return self.first == PT_SK or self.first == PT_SKF


def parse_chain(buf, pos, end, ptype, outer):
    """Walk a payload chain from `pos` to `end` starting with type `ptype`.

    Returns (payloads, sk_next) or None. In the outer chain (`outer`) an SK
    or SKF payload must be the last one (§3.14) and is not looked into."""
    out = []
    sk_next = None
    while ptype != PT_NONE:
        if len(out) >= MAX_PAYLOADS:
            return None
        if pos + GEN_HDR_LEN > end:
            return None
        nxt = buf[pos]
        plen = (buf[pos + 2] << 8) | buf[pos + 3]
        if plen < GEN_HDR_LEN or pos + plen > end:
            return None
        body = bytes(buf[pos + GEN_HDR_LEN : pos + plen])
        out.append((ptype, buf[pos + 1] >> 7, body))
        pos += plen
        if ptype == PT_SK or ptype == PT_SKF:
            if not outer or pos != end:
                return None
            sk_next = nxt
            break
        ptype = nxt
    if pos != end:
        return None
    return out, sk_next


def parse(buf):
    """One IKE message (no non-ESP marker) -> Message, or None if malformed.

    §3.1: major version 2 (a higher major version is not ours to answer
    here), Length equal to the datagram's; §3.2: every payload inside."""
    n = len(buf)
    if n < IKE_HDR_LEN:
        return None
    if buf[17] >> 4 != 2:
        return None
    length = (buf[24] << 24) | (buf[25] << 16) | (buf[26] << 8) | buf[27]
    if length != n:
        return None
    r = parse_chain(buf, IKE_HDR_LEN, n, buf[16], True)
    if r is None:
        return None
    m = Message()
    m.buf = bytes(buf)
    m.spi_i = bytes(buf[0:8])
    m.spi_r = bytes(buf[8:16])
    m.first = buf[16]
    m.exchange = buf[18]
    m.flags = buf[19]
    m.msg_id = (buf[20] << 24) | (buf[21] << 16) | (buf[22] << 8) | buf[23]
    m.payloads, m.sk_next = r
    return m


def encode_chain(payloads):
    """(type, body) pairs -> bytes of the chain; the first type is returned
    separately because the header (or the SK payload) names it."""
    parts = []
    for i in range(len(payloads)):
        body = payloads[i][1]
        nxt = payloads[i + 1][0] if i + 1 < len(payloads) else PT_NONE
        parts.append(struct.pack(">BBH", nxt, 0, GEN_HDR_LEN + len(body)))
        parts.append(bytes(body))
    first = payloads[0][0] if payloads else PT_NONE
    return first, b"".join(parts)


def _header(spi_i, spi_r, first, exchange, flags, msg_id, length):
    return bytes(spi_i) + bytes(spi_r) + struct.pack(">BBBBII", first, IKE_VERSION, exchange, flags, msg_id, length)


def build(spi_i, spi_r, exchange, flags, msg_id, payloads):
    """An unprotected message (IKE_SA_INIT, or an unprotected notify)."""
    first, chain = encode_chain(payloads)
    return _header(spi_i, spi_r, first, exchange, flags, msg_id, IKE_HDR_LEN + len(chain)) + chain


def build_sk(spi_i, spi_r, exchange, flags, msg_id, payloads, encr_key, integ_key, iv):
    """A protected message: HDR, SK{payloads} (RFC 7296 §3.14).

    Plaintext = inner chain | Padding | Pad Length, a multiple of the AES
    block; "the Padding MAY contain any value chosen by the sender" (we
    send zeros). The ICV is HMAC-SHA-256-128 over the whole message from
    the first octet of the header to the last of the ciphertext (IV
    included), with the header's Length already final."""
    first, chain = encode_chain(payloads)
    pad = (BLOCK - (len(chain) + 1) % BLOCK) % BLOCK
    plain = chain + bytes(pad) + bytes((pad,))
    ct = crypto.aes_cbc_encrypt(encr_key, iv, plain)
    sk_len = GEN_HDR_LEN + len(iv) + len(ct) + ICV_LEN
    total = IKE_HDR_LEN + sk_len
    head = _header(spi_i, spi_r, PT_SK, exchange, flags, msg_id, total) + struct.pack(">BBH", first, 0, sk_len)
    signed = head + iv + ct
    return signed + crypto.hmac_sha256(integ_key, signed)[:ICV_LEN]


def decrypt_sk(m, encr_key, integ_key):
    """Check the ICV and decrypt the SK payload of `m`.

    Returns the inner payloads [(type, critical, body)] or None when the
    message is not protected, the ICV does not verify (checked first, in
    constant time, before any decryption), or the plaintext is malformed."""
    if m.first != PT_SK or not m.payloads or m.payloads[-1][0] != PT_SK:
        return None
    body = m.payloads[-1][2]
    # IV (16) + at least one block + ICV (16)
    if len(body) < BLOCK + BLOCK + ICV_LEN or (len(body) - ICV_LEN) % BLOCK:
        return None
    buf = m.buf
    icv = buf[len(buf) - ICV_LEN :]
    want = crypto.hmac_sha256(integ_key, buf[: len(buf) - ICV_LEN])[:ICV_LEN]
    if not crypto.ct_equal(icv, want):
        return None
    iv = body[0:BLOCK]
    plain = crypto.aes_cbc_decrypt(encr_key, iv, body[BLOCK : len(body) - ICV_LEN])
    pad = plain[-1]
    end = len(plain) - 1 - pad
    if end < 0:
        return None
    r = parse_chain(plain, 0, end, m.sk_next, False)
    if r is None:
        return None
    return r[0]

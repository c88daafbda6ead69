# IKE messages (RFC 7296 §3.1-3.2, §3.14): the header, the payload chain,
# and the Encrypted (SK) payload that protects everything after IKE_SA_INIT.
#
# The framing (header, chain, SK/SKF frame checks, caps) and the parsed
# Message are ikebase.ikev2, shared with lib/qcd; this module adds what only
# an engine with keys does: building and opening SK. Anything
# malformed gives None (design principle 5), never an exception.
#
# `integ_key` below is the IKE SA's crypto.hmac_key for that direction, made
# once per SA (ike.keymat.IkeKeys: its padded key blocks are not rebuilt
# per message), or raw key bytes for a one-off (tests, tools).

from ike import crypto
from ike.keymat import BLOCK, ICV_LEN
from ikebase import ikev2
from ikebase.ikev2 import *  # noqa: F401,F403,F405 (build, encode_chain, hdr, the numbers)


def parse_chain(buf, pos, end, ptype, outer):
    """Walk a payload chain (ikebase.ikev2.chain) and return (payloads with
    their bodies as bytes, sk_next), or None."""
    r = ikev2.chain(buf, pos, end, ptype, outer)
    if r is None:
        return None
    return [(t, c, bytes(buf[s:e])) for t, c, s, e in r[0]], r[1]


# parse(buf) -> ikebase.ikev2.Message (payload offsets; m.bodies() gives
# them as bytes), or None if malformed: the one parse the hook shares.
parse = ikev2.parse


def _mac(integ_key):
    return integ_key if isinstance(integ_key, crypto.hmac_key) else crypto.hmac_key(integ_key)


def build_sk(spi_i, spi_r, exchange, flags, msg_id, payloads, encr_key, integ_key, iv):
    """A protected message: HDR, SK{payloads} (RFC 7296 §3.14), as a
    bytearray the caller owns.

    Plaintext = inner chain | Padding | Pad Length, a multiple of the AES
    block; "the Padding MAY contain any value chosen by the sender" (we
    send zeros). The ICV is HMAC-SHA-256-128 over the whole message from
    the first octet of the header to the last of the ciphertext (IV
    included), with the header's Length already final.

    Built in one buffer of the message's final size: the chain is written
    where its ciphertext goes, encrypted there (crypto.aes_cbc_encrypt_into)
    and the ICV computed over a view of it, so a message of N octets costs
    about N of heap, not the five copies (chain, padded plaintext,
    ciphertext, signed part, message) concatenation made."""
    n = chain_len(payloads)
    pad = (BLOCK - (n + 1) % BLOCK) % BLOCK
    ct = HDR_LEN + GEN_LEN + BLOCK  # where the plaintext, then the ciphertext, goes
    sk_len = GEN_LEN + BLOCK + n + pad + 1 + ICV_LEN
    total = HDR_LEN + sk_len
    out = bytearray(total)
    out[:HDR_LEN] = hdr(spi_i, spi_r, PT_SK, exchange, flags, msg_id, total)
    out[HDR_LEN] = chain_into(payloads, out, ct)
    out[HDR_LEN + 2] = sk_len >> 8
    out[HDR_LEN + 3] = sk_len & 0xFF
    out[ct - BLOCK : ct] = iv
    end = total - ICV_LEN
    out[end - 1] = pad  # the padding before it stays zero
    crypto.aes_cbc_encrypt_into(encr_key, iv, out, ct, end)
    out[end:] = _mac(integ_key).digest(memoryview(out)[:end])[:ICV_LEN]
    return out


def decrypt_sk(m, encr_key, integ_key):
    """Check the ICV and decrypt the SK payload of `m`.

    Returns the inner payloads [(type, critical, body)] or None when the
    message is not protected, the ICV does not verify (checked first, in
    constant time, before any decryption), or the plaintext is malformed."""
    if m.first != PT_SK or not m.payloads or m.payloads[-1][0] != PT_SK:
        return None
    _t, _c, start, end = m.payloads[-1]
    n = end - start
    # IV (16) + at least one block + ICV (16)
    if n < BLOCK + BLOCK + ICV_LEN or (n - ICV_LEN) % BLOCK:
        return None
    buf = m.buf
    mv = memoryview(buf)  # views, not copies, of the datagram's parts
    icv = buf[len(buf) - ICV_LEN :]
    want = _mac(integ_key).digest(mv[: len(buf) - ICV_LEN])[:ICV_LEN]
    if not crypto.ct_equal(icv, want):
        return None
    iv = buf[start : start + BLOCK]
    plain = crypto.aes_cbc_decrypt(encr_key, iv, mv[start + BLOCK : end - ICV_LEN])
    pad = plain[-1]
    end = len(plain) - 1 - pad
    if end < 0:
        return None
    r = parse_chain(plain, 0, end, m.sk_next, False)
    if r is None:
        return None
    return r[0]

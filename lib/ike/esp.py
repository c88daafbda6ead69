# ESP (RFC 4303) in UDP (RFC 3948) with the Child SA keys: ENCR_AES_CBC-256
# and AUTH_HMAC_SHA2_256_128. The engine's Child SAs carry no data plane of
# their own; this is what lets a gateway send a real ESP packet into an SA
# (the RFC 6290 §8.2 case: after a reboot the first packet the device sees
# is ESP) and lets a peer check and open one.
#
#   SPI (4) | Sequence Number (4) | IV (16) |
#   AES-CBC( payload | Padding | Pad Length (1) | Next Header (1) ) |
#   ICV (16) = HMAC-SHA-256(integ key, SPI .. end of ciphertext)[:16]
#
# `integ_key` is the Child SA's crypto.hmac_key, made once per SA (its
# padded key blocks: two 64-octet XORs of a big integer saved per packet),
# or raw key bytes for a one-off (tests, tools).

import struct

from ike import crypto
from ike.keymat import BLOCK, ICV_LEN

NEXT_IPV4 = 4  # RFC 4303 §2.6: tunnel mode carries an IP packet
NEXT_NONE = 59  # RFC 4303 §2.6: a dummy packet, to be discarded
ESP_HDR = 8
REPLAY_WINDOW = 64  # RFC 4303 §3.4.3: at least 32, 64 recommended


def _mac(integ_key):
    return integ_key if isinstance(integ_key, crypto.hmac_key) else crypto.hmac_key(integ_key)


def encapsulate(spi, seq, encr_key, integ_key, payload, next_header, iv):
    """One ESP packet (no UDP header: the caller sends it on the NAT-T port,
    where a non-zero first word marks ESP, RFC 3948 §2.2)."""
    # RFC 4303 §2.4: padding so that Pad Length and Next Header end on the
    # cipher block; "the Padding bytes are initialized with a series of
    # (unsigned, 1-byte) integer values ... 1, 2, 3, ...".
    pad = (BLOCK - (len(payload) + 2) % BLOCK) % BLOCK
    plain = bytes(payload) + bytes(range(1, pad + 1)) + bytes((pad, next_header))
    ct = crypto.aes_cbc_encrypt(encr_key, iv, plain)
    head = struct.pack(">II", spi, seq) + bytes(iv)
    signed = head + ct
    return signed + _mac(integ_key).digest(signed)[:ICV_LEN]


def seal_into(buf, inner_len, spi, seq, encr_key, integ_key, next_header, iv):
    """encapsulate() for a packet built in place: `buf` holds room for the
    ESP header and IV, then the inner packet (inner_len octets), then room
    for padding, trailer and ICV (ike.tunnel preallocates it). Returns the
    datagram (one copy; the crypto adapter's output is the other object)."""
    h = ESP_HDR + BLOCK
    pad = (BLOCK - (inner_len + 2) % BLOCK) % BLOCK
    e = h + inner_len
    for i in range(pad):  # RFC 4303 §2.4: 1, 2, 3, ...
        buf[e + i] = i + 1
    e += pad
    buf[e] = pad
    buf[e + 1] = next_header
    e += 2
    struct.pack_into(">II", buf, 0, spi, seq)
    buf[ESP_HDR:h] = iv
    mv = memoryview(buf)
    buf[h:e] = crypto.aes_cbc_encrypt(encr_key, iv, mv[h:e])
    buf[e : e + ICV_LEN] = _mac(integ_key).digest(mv[:e])[:ICV_LEN]
    return bytes(mv[: e + ICV_LEN])


def spi_of(packet):
    if len(packet) < ESP_HDR:
        return None
    return int.from_bytes(packet[0:4], "big")


def decapsulate(packet, encr_key, integ_key):
    """Check the ICV (first, RFC 4303 §3.4.4), then decrypt.

    Returns (sequence number, next header, payload) or None."""
    n = len(packet)
    if n < ESP_HDR + BLOCK + BLOCK + ICV_LEN or (n - ESP_HDR - ICV_LEN) % BLOCK:
        return None
    want = _mac(integ_key).digest(packet[: n - ICV_LEN])[:ICV_LEN]
    if not crypto.ct_equal(packet[n - ICV_LEN :], want):
        return None
    seq = int.from_bytes(packet[4:8], "big")
    iv = packet[ESP_HDR : ESP_HDR + BLOCK]
    plain = crypto.aes_cbc_decrypt(encr_key, iv, packet[ESP_HDR + BLOCK : n - ICV_LEN])
    pad = plain[-2]
    nh = plain[-1]
    end = len(plain) - 2 - pad
    if end < 0:
        return None
    return seq, nh, bytes(plain[:end])


class ReplayWindow:
    """RFC 4303 §3.4.3 anti-replay: a sliding window of REPLAY_WINDOW
    sequence numbers, updated only after the ICV verified."""

    __slots__ = ("top", "bits")

    def __init__(self):
        self.top = 0
        self.bits = 0

    def check(self, seq):
        if seq == 0:
            return False  # §3.3.3: the first packet sent has number 1
        if seq > self.top:
            return True
        d = self.top - seq
        if d >= REPLAY_WINDOW:
            return False
        return not (self.bits >> d) & 1

    def update(self, seq):
        if seq > self.top:
            shift = seq - self.top
            self.bits = ((self.bits << shift) | 1) & ((1 << REPLAY_WINDOW) - 1) if shift < REPLAY_WINDOW else 1
            self.top = seq
        else:
            self.bits |= 1 << (self.top - seq)


def _checksum(b):
    # RFC 1071 Internet checksum
    if len(b) % 2:
        b = b + b"\x00"
    s = 0
    for i in range(0, len(b), 2):
        s += (b[i] << 8) | b[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def icmp_echo(src4, dst4, ident, seq, data=b"qcd"):
    """An IPv4 ICMP echo request (RFC 792) from src4 to dst4: a packet a
    tunnel may carry, to send through a Child SA."""
    icmp = struct.pack(">BBHHH", 8, 0, 0, ident & 0xFFFF, seq & 0xFFFF) + bytes(data)
    icmp = icmp[0:2] + struct.pack(">H", _checksum(icmp)) + icmp[4:]
    total = 20 + len(icmp)
    ip = struct.pack(">BBHHHBBH", 0x45, 0, total, ident & 0xFFFF, 0, 64, 1, 0) + bytes(src4) + bytes(dst4)
    ip = ip[0:10] + struct.pack(">H", _checksum(ip)) + ip[12:]
    return ip + icmp

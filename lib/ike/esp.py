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

from ike import crypto, state
from ike.const import ESP_SPI_MIN
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


# -- the engine's ESP ------------------------------------------------------------
#
# Engine._esp_in and Engine.send_esp, kept here rather than in ike.engine:
# this module loads at the first ESP packet (or send_esp), so a device that
# sees no ESP holds none of this code, and one that does loads it anyway.


def engine_in(eng, packet, src, now):
    """An ESP packet on the NAT-T port (Engine._esp_in): checked, opened
    and handed to the data plane (eng.tunnel) or reported as an event."""
    spi = spi_of(packet)
    if spi is None or spi < ESP_SPI_MIN:
        eng.count("dropped_malformed")
        return
    hit = eng.children.get(spi)
    if hit is None:
        # docs/hook.md §5 (RFC 6290 §8.2): the hook may answer
        eng._answer(eng._hook("unknown_esp_spi", None, packet, src, now), src, True, "dropped_esp")
        return
    child, sa = hit
    r = decapsulate(packet, child.keys[0], child.mac_in)
    if child.replay is None:
        child.replay = ReplayWindow()
    if r is None or not child.replay.check(r[0]):
        eng.count("dropped_esp")
        return
    child.replay.update(r[0])
    child.packets_in += 1
    sa.last_recv = now  # RFC 7296 §2.4: traffic proves liveness
    if eng.tunnel is not None:
        eng.tunnel.esp_in(child, sa, r[1], r[2], now)
        return
    eng.event("esp", sa=sa.name(), child=child.name(), seq=r[0], next_header=r[1], payload=r[2])
    eng.log("ike: ESP in on %s seq %d, %d octets" % (child.name(), r[0], len(r[2])))


def _some_child(eng):
    # An installed Child SA, else one being rekeyed: RFC 7296 §2.8 keeps
    # the old SA in use until its successor is up, so traffic does not
    # stop while a CREATE_CHILD_SA is outstanding (and a rebooted peer's
    # §8.2 QCD answer to that ESP does not wait for the rekey's
    # retransmissions).
    spare = None
    for sa in eng.sas.values():
        if sa.up():
            for c in sa.children:
                if c.state == state.INSTALLED:
                    return c
                if c.state == state.REKEYING and spare is None:
                    spare = c
    return spare


def _host(sel):
    """The first host address of a selector (its start + 1 when it is a
    network), for the test packet engine_send builds."""
    a = int.from_bytes(sel[4], "big")
    if sel[5] != sel[4]:
        a += 1
    return a.to_bytes(4, "big")


def engine_send(eng, now, payload, child):
    """Engine.send_esp: one ESP-in-UDP packet into `child` (default: an
    installed Child SA, else one being rekeyed), `payload` by default an
    ICMP echo request between the traffic selectors. Returns the packet, or
    None (no Child SA, or its IKE SA is not on the NAT-T port)."""
    if child is None:
        child = _some_child(eng)
    if child is None:
        return None
    hit = eng.children.get(child.spi_in)
    if hit is None:
        return None
    sa = hit[1]
    if not sa.natt:
        eng.log("ike: ESP needs UDP encapsulation; IKE SA %s is not on the NAT-T port" % sa.name())
        return None
    if payload is None:
        payload = icmp_echo(_host(child.ts_local[0]), _host(child.ts_peer[0]), child.seq_out + 1, child.seq_out + 1)
    child.seq_out += 1
    pkt = encapsulate(child.spi_out, child.seq_out, child.keys[2], child.mac_out, payload, NEXT_IPV4, eng.rng(BLOCK))
    child.packets_out += 1
    eng.emit_esp(pkt, sa)
    eng.log("ike: ESP out on %s seq %d, %d octets" % (child.name(), child.seq_out, len(payload)))
    return pkt

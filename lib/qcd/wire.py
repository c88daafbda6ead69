# The IKEv2 wire format as far as Quick Crash Detection needs it: the header
# (RFC 7296 §3.1), the generic payload chain (§3.2), Notify payloads (§3.10),
# and the two unprotected answers a token maker sends (RFC 6290 §4.5, §8.2).
#
# Everything here takes bytes from the network. The rule (design.md principle
# 5): every length is checked against the datagram before it is used, and a
# malformed datagram yields None, never an exception. Nothing here decrypts:
# a protected message (first payload SK or SKF) is only checked for a
# consistent frame.

import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# Exchange types (RFC 7296 §3.1)
IKE_SA_INIT = const(34)
IKE_AUTH = const(35)
CREATE_CHILD_SA = const(36)
INFORMATIONAL = const(37)
IKE_INTERMEDIATE = const(43)  # RFC 9242

# Header flags (RFC 7296 §3.1)
FLAG_I = const(0x08)  # sender is the original initiator of the IKE SA
FLAG_V = const(0x10)
FLAG_R = const(0x20)  # message is a response

# Payload types (RFC 7296 §3.2, RFC 7383): those QCD and its tools meet.
# (lib/ike/const.py has the rest; qcdhost.names names them all.)
_PT_NONE = const(0)  # "no next payload"
PT_SA = const(33)
PT_KE = const(34)
PT_N = const(41)
PT_D = const(42)
PT_V = const(43)
PT_SK = const(46)
PT_SKF = const(53)

# Notify message types (RFC 7296 §3.10.1, RFC 6290 §4.1) QCD sends or reads.
INVALID_IKE_SPI = const(4)
INVALID_SPI = const(11)
INITIAL_CONTACT = const(16384)
REKEY_SA = const(16393)
QUICK_CRASH_DETECTION = const(16419)

PROTO_IKE = const(1)  # Protocol ID (RFC 7296 §3.3.1)

HDR_LEN = const(28)  # RFC 7296 §3.1
GEN_LEN = const(4)  # generic payload header, RFC 7296 §3.2
NOTIFY_FIXED = const(4)  # Protocol ID, SPI Size, Notify Message Type
# The shortest SK payload body: an IV plus an integrity check value; 8 octets
# is below any transform RFC 7296 allows (AES-CBC alone has a 16-octet IV).
SK_MIN_BODY = const(8)
# RFC 7383 §2.5: Fragment Number and Total Fragments precede the IV.
_SKF_FIXED = const(4)
# Cap on payloads walked in one message: bounds work and RAM per datagram. A
# real IKE message has a handful; 64 is generous (strongSwan parses at most
# what fits its 10000-octet limit, our device far less).
MAX_PAYLOADS = const(64)
# RFC 4303 §2.1: SPI values 1..255 are reserved by IANA; 0 is never an ESP
# SPI and on UDP 4500 marks an IKE message (RFC 3948 §2.2).
_ESP_SPI_MIN = const(256)
# SPI (4) + Sequence Number (4): the fixed ESP header (RFC 4303 §2).
_ESP_HDR_LEN = const(8)


class Message:
    """A parsed IKE message: header fields and the payload chain.

    payloads is a list of (type, critical, body_start, body_end) offsets into
    buf; for a protected message it ends with the SK or SKF payload, whose
    encrypted body is not looked into.
    """

    __slots__ = (
        "buf",
        "spi_i",
        "spi_r",
        "first",
        "version",
        "exchange",
        "flags",
        "msg_id",
        "payloads",
    )

    def is_response(self):
        return bool(self.flags & FLAG_R)

    def from_initiator(self):
        return bool(self.flags & FLAG_I)

    def is_protected(self):
        return self.first == PT_SK or self.first == PT_SKF

    def body(self, index):
        p = self.payloads[index]
        return self.buf[p[2] : p[3]]

    def notifies(self):
        """The Notify payloads as (type, protocol_id, spi, data) tuples, in order.

        Returns None if any Notify payload is malformed (the whole message is
        then untrustworthy). A protected message yields [] (its notifies are
        inside SK).
        """
        out = []
        buf = self.buf
        for ptype, _crit, start, end in self.payloads:
            if ptype != PT_N:
                continue
            if end - start < NOTIFY_FIXED:
                return None
            proto, spi_size, ntype = struct.unpack_from(">BBH", buf, start)
            d = start + NOTIFY_FIXED
            if d + spi_size > end:
                return None
            out.append((ntype, proto, bytes(buf[d : d + spi_size]), bytes(buf[d + spi_size : end])))
        return out


# Why the last parse() returned None: a constant string, for tools and logs
# (no allocation on the device's hot path).
last_error = None


def _bad(why):
    global last_error
    last_error = why
    return None


def parse(buf):
    """Parse one IKE message (no non-ESP marker); a Message, or None if malformed.

    Checks (RFC 7296 §3.1-3.2): at least a header; major version 2; the
    header's Length equals the datagram's; every payload length at least 4 and
    inside the message; the chain ends exactly at the end of the message; an SK
    or SKF payload, if present, is the last one and is long enough to hold its
    fixed fields. On None, `last_error` says which check failed.
    """
    n = len(buf)
    if n < HDR_LEN:
        return _bad("shorter than the 28-octet IKE header")
    if buf[17] >> 4 != 2:  # major version (§3.1); minor is ignored
        return _bad("IKE major version is not 2")
    if struct.unpack_from(">I", buf, 24)[0] != n:
        return _bad("header Length differs from the datagram length")
    ptype = buf[16]
    pos = HDR_LEN
    payloads = []
    while ptype != _PT_NONE:
        if len(payloads) >= MAX_PAYLOADS:
            return _bad("too many payloads")
        if pos + GEN_LEN > n:
            return _bad("payload header runs past the end")
        nxt, crit, plen = struct.unpack_from(">BBH", buf, pos)
        end = pos + plen
        if plen < GEN_LEN:
            return _bad("payload length below 4")
        if end > n:
            return _bad("payload runs past the end")
        payloads.append((ptype, crit >> 7, pos + GEN_LEN, end))
        if ptype == PT_SK or ptype == PT_SKF:
            # §3.14: SK is the last payload; its Next Payload names the first
            # payload inside the encryption.
            if end != n:
                return _bad("SK/SKF is not the last payload")
            body = plen - GEN_LEN
            if ptype == PT_SKF:
                # RFC 7383 §2.5: Fragment Number >= 1, <= Total Fragments.
                if body < _SKF_FIXED + SK_MIN_BODY:
                    return _bad("SKF payload too short")
                frag, total = struct.unpack_from(">HH", buf, pos + GEN_LEN)
                if frag < 1 or frag > total:
                    return _bad("SKF fragment number out of range")
            elif body < SK_MIN_BODY:
                return _bad("SK payload too short")
            pos = end
            break
        ptype = nxt
        pos = end
    if pos != n:
        return _bad("octets after the last payload")
    m = Message()
    m.buf = buf
    m.spi_i, m.spi_r, m.first, m.version, m.exchange, m.flags, m.msg_id = struct.unpack_from(">8s8sBBBBI", buf)
    m.payloads = payloads
    return m


def strip_marker(datagram):
    """Split a datagram received on UDP 4500 (RFC 3948 §2.2).

    Returns ("ike", message_bytes) after a 4-octet zero non-ESP marker,
    ("esp", packet) when the first four octets are a non-zero SPI, or
    (None, None) for anything shorter than four octets (and the one-octet
    0xFF NAT-keepalive, RFC 3948 §2.3, which is not a message).
    """
    if len(datagram) < 4:
        return None, None
    if datagram[0] == 0 and datagram[1] == 0 and datagram[2] == 0 and datagram[3] == 0:
        return "ike", datagram[4:]
    return "esp", datagram


def esp_spi(packet):
    """The SPI of an ESP packet (RFC 4303 §2.1), or None if it cannot be one."""
    if len(packet) < _ESP_HDR_LEN:
        return None
    spi = struct.unpack_from(">I", packet)[0]
    return spi if spi >= _ESP_SPI_MIN else None


def notify_body(ntype, data=b"", proto=0, spi=b""):
    """The body of a Notify payload (RFC 7296 §3.10), without the generic header."""
    b = bytearray(NOTIFY_FIXED + len(spi) + len(data))
    struct.pack_into(">BBH", b, 0, proto, len(spi), ntype)
    b[NOTIFY_FIXED : NOTIFY_FIXED + len(spi)] = spi
    b[NOTIFY_FIXED + len(spi) :] = data
    return bytes(b)


def build(spi_i, spi_r, exchange, flags, msg_id, payloads, first=None):
    """An IKE message from (type, body) payloads, chained in order.

    The header's Next Payload is the first payload's type (or `first` when
    the caller builds the chain itself); each payload's Next Payload is the
    type of the one after it.
    """
    total = HDR_LEN
    for _t, body in payloads:
        total += GEN_LEN + len(body)
    b = bytearray(total)
    b[0:8] = spi_i
    b[8:16] = spi_r
    if first is None:
        first = payloads[0][0] if payloads else _PT_NONE
    struct.pack_into(">BBBBII", b, 16, first, 0x20, exchange, flags, msg_id, total)
    pos = HDR_LEN
    for i in range(len(payloads)):
        body = payloads[i][1]
        nxt = payloads[i + 1][0] if i + 1 < len(payloads) else _PT_NONE
        struct.pack_into(">BBH", b, pos, nxt, 0, GEN_LEN + len(body))
        b[pos + GEN_LEN : pos + GEN_LEN + len(body)] = body
        pos += GEN_LEN + len(body)
    return bytes(b)


def answer_invalid_ike_spi(req, tokens, proto_id=PROTO_IKE):
    """The RFC 6290 §4.5 answer to a request for unknown IKE SPIs.

    `HDR, N(INVALID_IKE_SPI), N(QUICK_CRASH_DETECTION)+`, unprotected (RFC
    7296 §2.21.4): same SPIs and Message ID as the request, exchange type
    copied, Response flag set, Initiator flag the opposite of the request's
    (the request's I flag says whether its sender is the original initiator).
    N(INVALID_IKE_SPI) has no SPI, so its Protocol ID is 0 (§3.10); each QCD
    notify carries proto_id (RFC 6290 §4.1 says 1; receivers ignore it).
    """
    flags = FLAG_R | (0 if req.flags & FLAG_I else FLAG_I)
    return build(req.spi_i, req.spi_r, req.exchange, flags, req.msg_id, _with_tokens(INVALID_IKE_SPI, b"", tokens, proto_id))


def answer_invalid_spi(spi, spi_i, spi_r, initiator, tokens, proto_id=PROTO_IKE):
    """The RFC 6290 §8.2 answer to an ESP packet whose SPI nobody knows.

    `HDR, N(INVALID_SPI), N(QUICK_CRASH_DETECTION)+`, unprotected, with the
    parent IKE SA's SPIs from the stored Child SPI map in the header so the
    taker can find the SA. It answers no IKE request: an INFORMATIONAL with
    Message ID 0, the Response flag clear and the Initiator flag telling our
    original role. N(INVALID_SPI) carries the packet's SPI as its data (RFC
    7296 §3.10.1) with an empty SPI field, hence Protocol ID 0.
    """
    return build(spi_i, spi_r, INFORMATIONAL, FLAG_I if initiator else 0, 0, _with_tokens(INVALID_SPI, spi, tokens, proto_id))


def _with_tokens(ntype, data, tokens, proto_id):
    # N(ntype, data) then one N(QUICK_CRASH_DETECTION) per token (RFC 6290 §4.5, §8.2)
    pl = [(PT_N, notify_body(ntype, data))]
    for t in tokens:
        pl.append((PT_N, notify_body(QUICK_CRASH_DETECTION, t, proto_id)))
    return pl

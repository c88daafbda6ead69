# The IKEv2 framing both lib/qcd and lib/ike read and write: the header (RFC
# 7296 §3.1), the generic payload chain (§3.2, with the SK and SKF rules of
# §3.14 and RFC 7383 §2.5), the Notify payload (§3.10) and the UDP 4500
# demultiplexing of RFC 3948 §2.2-2.3. One copy, so one rule: the same caps
# and the same checks for the QCD maker's answers and for the engine.
#
# parse() is the one parse of a datagram: the engine (lib/ike) parses it
# once and hands the same Message to the notify hook (lib/qcd), which then
# does not parse again (docs/hook.md).
#
# Everything here takes bytes from the network: every length is checked
# against the datagram before it is used, and a malformed input gives None
# (design.md principle 5), never an exception; `last_error` then says which
# check failed (a constant string: no allocation on the device's hot path).
# Nothing here decrypts: an SK or SKF payload is only checked for a
# consistent frame.

import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# Exchange types (RFC 7296 §3.1, RFC 9242)
IKE_SA_INIT = const(34)
IKE_AUTH = const(35)
CREATE_CHILD_SA = const(36)
INFORMATIONAL = const(37)
IKE_INTERMEDIATE = const(43)

# Header flags (§3.1)
FLAG_I = const(0x08)  # sender is the original initiator of the IKE SA
FLAG_V = const(0x10)
FLAG_R = const(0x20)  # the message is a response

_VERSION = const(0x20)  # major 2, minor 0

# Payload types both sides meet (§3.2, RFC 7383); lib/ike/const.py has the rest
PT_NONE = const(0)
PT_SA = const(33)
PT_KE = const(34)
PT_N = const(41)
PT_D = const(42)
PT_V = const(43)
PT_SK = const(46)
PT_SKF = const(53)

# Notify message types (§3.10.1, RFC 6290 §4.1) both sides meet
INVALID_IKE_SPI = const(4)
INVALID_SPI = const(11)
INITIAL_CONTACT = const(16384)
REKEY_SA = const(16393)
QUICK_CRASH_DETECTION = const(16419)

PROTO_IKE = const(1)  # Protocol ID (§3.3.1)

HDR_LEN = const(28)  # §3.1
GEN_LEN = const(4)  # generic payload header, §3.2
NOTIFY_FIXED = const(4)  # Protocol ID, SPI Size, Notify Message Type
# The shortest SK payload body: an IV plus an integrity check value; 8 octets
# is below any transform RFC 7296 allows (AES-CBC alone has a 16-octet IV).
SK_MIN_BODY = const(8)
# RFC 7383 §2.5: Fragment Number and Total Fragments precede the IV.
_SKF_FIXED = const(4)
# Cap on payloads walked in one chain (the message, or the inside of SK):
# bounds work and RAM per datagram. Real messages have a dozen at most
# (strongSwan's IKE_AUTH with every notify it knows has about 15).
MAX_PAYLOADS = const(48)

last_error = None


def _bad(why):
    global last_error
    last_error = why
    return None


def header(buf):
    """The header fields (first payload, version, exchange, flags, msg_id) of
    one IKE message (no non-ESP marker), or None: shorter than the header,
    major version not 2 (the minor one is ignored), or a header Length that
    is not the datagram's."""
    n = len(buf)
    if n < HDR_LEN:
        return _bad("shorter than the IKE header")
    if buf[17] >> 4 != 2:
        return _bad("IKE major version is not 2")
    if struct.unpack_from(">I", buf, 24)[0] != n:
        return _bad("header Length differs from the datagram's")
    return struct.unpack_from(">BBBBI", buf, 16)


def chain(buf, pos, end, ptype, outer):
    """Walk a payload chain from `pos` to `end` whose first payload is of type
    `ptype`. Returns (payloads, sk_next) with payloads a list of (type,
    critical, body_start, body_end) offsets into buf, or None.

    Every payload length is at least 4 and inside `end`; the chain ends
    exactly at `end`. In the outer chain (`outer`) an SK or SKF payload is
    the last one and long enough for its fixed fields (an SKF's Fragment
    Number is 1..Total Fragments), and `sk_next` is the type of the first
    payload inside it; inside SK, an SK or SKF payload is malformed."""
    payloads = []
    sk_next = None
    while ptype != PT_NONE:
        if len(payloads) >= MAX_PAYLOADS:
            return _bad("too many payloads")
        if pos + GEN_LEN > end:
            return _bad("payload header past the end")
        nxt, crit, plen = struct.unpack_from(">BBH", buf, pos)
        if plen < GEN_LEN:
            return _bad("payload length below 4")
        stop = pos + plen
        if stop > end:
            return _bad("payload past the end")
        payloads.append((ptype, crit >> 7, pos + GEN_LEN, stop))
        if ptype == PT_SK or ptype == PT_SKF:
            if not outer:
                return _bad("SK/SKF inside SK")
            # §3.14: SK is the last payload; its Next Payload names the
            # first payload inside the encryption.
            if stop != end:
                return _bad("SK/SKF not the last payload")
            body = plen - GEN_LEN
            if ptype == PT_SKF:
                if body < _SKF_FIXED + SK_MIN_BODY:
                    return _bad("SKF payload too short")
                frag, total = struct.unpack_from(">HH", buf, pos + GEN_LEN)
                if frag < 1 or frag > total:
                    return _bad("SKF fragment number invalid")
            elif body < SK_MIN_BODY:
                return _bad("SK payload too short")
            sk_next = nxt
            pos = stop
            break
        ptype = nxt
        pos = stop
    if pos != end:
        return _bad("octets after the last payload")
    return payloads, sk_next


class Message:
    """A parsed IKE message: the header fields and the payload chain.

    `payloads` is a list of (type, critical, body_start, body_end) offsets
    into `buf` (no body is copied); for a protected message it ends with the
    SK or SKF payload, whose encrypted body is not looked into, and
    `sk_next` is the type of the first payload inside it."""

    __slots__ = ("buf", "spi_i", "spi_r", "first", "version", "exchange", "flags", "msg_id", "payloads", "sk_next")

    def is_response(self):
        return bool(self.flags & FLAG_R)

    def is_protected(self):
        return self.first == PT_SK or self.first == PT_SKF

    def bodies(self):
        """The payloads as (type, critical, body bytes)."""
        buf = self.buf
        return [(t, c, buf[s:e]) for t, c, s, e in self.payloads]

    def notifies(self):
        """The Notify payloads as (type, protocol_id, spi, data) tuples, in
        order; None if any of them is malformed (the whole message is then
        untrustworthy). A protected message yields [] (its notifies are
        inside SK)."""
        out = []
        for ptype, _crit, start, end in self.payloads:
            if ptype == PT_N:
                n = notify(self.buf, start, end)
                if n is None:
                    return None
                out.append(n)
        return out


def parse(buf):
    """One IKE message (bytes, no non-ESP marker) -> Message, or None if
    malformed (header() and chain() say what is checked; `last_error` why)."""
    h = header(buf)
    r = chain(buf, HDR_LEN, len(buf), buf[16], True) if h is not None else None
    if r is None:
        return None
    m = Message()
    m.buf = buf
    m.spi_i = bytes(buf[0:8])
    m.spi_r = bytes(buf[8:16])
    m.first, m.version, m.exchange, m.flags, m.msg_id = h
    m.payloads, m.sk_next = r
    return m


def notify(buf, start, end):
    """The Notify payload body buf[start:end] as (type, protocol_id, spi,
    data), or None when its SPI Size runs past the body (§3.10)."""
    if end - start < NOTIFY_FIXED:
        return None
    proto, spi_size, ntype = struct.unpack_from(">BBH", buf, start)
    d = start + NOTIFY_FIXED
    if d + spi_size > end:
        return None
    return ntype, proto, bytes(buf[d : d + spi_size]), bytes(buf[d + spi_size : end])


def notify_body(ntype, data=b"", proto=0, spi=b""):
    """The body of a Notify payload (§3.10), without the generic header."""
    return struct.pack(">BBH", proto, len(spi), ntype) + bytes(spi) + bytes(data)


def chain_len(payloads):
    """Octets of the chain of (type, body) pairs: a generic header each."""
    n = 0
    for p in payloads:
        n += GEN_LEN + len(p[1])
    return n


def chain_into(payloads, buf, pos):
    """Write the chain of (type, body) pairs into the bytearray `buf` at
    `pos` (chain_len(payloads) octets, each payload's Next Payload the type
    of the one after it); returns the type of the first."""
    for i in range(len(payloads)):
        body = payloads[i][1]
        nxt = payloads[i + 1][0] if i + 1 < len(payloads) else PT_NONE
        struct.pack_into(">BBH", buf, pos, nxt, 0, GEN_LEN + len(body))
        pos += GEN_LEN
        buf[pos : pos + len(body)] = body
        pos += len(body)
    return payloads[0][0] if payloads else PT_NONE


def encode_chain(payloads):
    """(type, body) pairs -> (type of the first, bytes of the chain)."""
    buf = bytearray(chain_len(payloads))
    first = chain_into(payloads, buf, 0)
    return first, bytes(buf)


def hdr(spi_i, spi_r, first, exchange, flags, msg_id, length):
    """The 28-octet IKE header."""
    return bytes(spi_i) + bytes(spi_r) + struct.pack(">BBBBII", first, _VERSION, exchange, flags, msg_id, length)


def build(spi_i, spi_r, exchange, flags, msg_id, payloads, first=None):
    """An unprotected IKE message from (type, body) payloads, chained in
    order; the header's Next Payload is the first payload's type, or
    `first` when given."""
    f, body = encode_chain(payloads)
    return hdr(spi_i, spi_r, f if first is None else first, exchange, flags, msg_id, HDR_LEN + len(body)) + body


def split_4500(datagram):
    """Demultiplex a datagram received on UDP 4500 (RFC 3948 §2.2-2.3):
    ("ike", message) after a 4-octet zero non-ESP marker, ("esp", packet)
    when the first four octets are not zero (an ESP SPI), ("keepalive",
    None) for the one-octet 0xFF NAT-keepalive, (None, None) for anything
    else shorter than four octets."""
    if len(datagram) < 4:
        if len(datagram) == 1 and datagram[0] == 0xFF:
            return "keepalive", None
        return None, None
    if datagram[0] == 0 and datagram[1] == 0 and datagram[2] == 0 and datagram[3] == 0:
        return "ike", datagram[4:]
    return "esp", datagram

# Payload bodies (RFC 7296 §3.3-3.13): what comes after the generic payload
# header. decode_* take untrusted bytes and return a value or None (never
# raise); encode_* take our own values and return bytes.
#
# Values:
#   proposal   (num, protocol_id, spi, [transform, ...])
#   transform  (type, id, key_length or None); key_length is -1 when the
#              transform carries an attribute we do not understand, which
#              makes it unusable (§3.3.6: "MUST reject the transform")
#   notify     (type, protocol_id, spi, data)
#   delete     (protocol_id, [spi, ...])
#   selector   (ts_type, ip_protocol, start_port, end_port, start_addr, end_addr)

import struct

from ike.const import (
    ATTR_KEY_LENGTH,
    ATTR_TV,
    PT_N,
)
from ikebase import ikev2

_LAST = 0
_MORE_PROPOSALS = 2  # §3.3.1 "Last Substruc" values
_MORE_TRANSFORMS = 3  # §3.3.2
MAX_PROPOSALS = 16
MAX_TRANSFORMS = 32
MAX_SELECTORS = 16
MAX_DELETE_SPIS = 64


def _u16(b, i):
    return (b[i] << 8) | b[i + 1]


# -- SA (§3.3) -------------------------------------------------------------------


def decode_sa(body):
    props = []
    pos = 0
    n = len(body)
    while pos < n:
        if len(props) >= MAX_PROPOSALS or pos + 8 > n:
            return None
        last = body[pos]
        plen = _u16(body, pos + 2)
        if plen < 8 or pos + plen > n or last not in (_LAST, _MORE_PROPOSALS):
            return None
        num, proto, spi_size, ntrans = body[pos + 4], body[pos + 5], body[pos + 6], body[pos + 7]
        q = pos + 8
        end = pos + plen
        if q + spi_size > end:
            return None
        spi = bytes(body[q : q + spi_size])
        q += spi_size
        trans = []
        for k in range(ntrans):
            if k >= MAX_TRANSFORMS or q + 8 > end:
                return None
            tlast = body[q]
            tlen = _u16(body, q + 2)
            if tlen < 8 or q + tlen > end:
                return None
            if tlast != (_LAST if k == ntrans - 1 else _MORE_TRANSFORMS):
                return None
            ttype = body[q + 4]
            tid = _u16(body, q + 6)
            keylen = None
            a = q + 8
            tend = q + tlen
            while a < tend:
                if a + 4 > tend:
                    return None
                atype = _u16(body, a)
                if atype & ATTR_TV:
                    val = _u16(body, a + 2)
                    a += 4
                    if atype & 0x7FFF == ATTR_KEY_LENGTH:
                        keylen = val
                    else:
                        keylen = -1
                else:
                    alen = _u16(body, a + 2)
                    if a + 4 + alen > tend:
                        return None
                    a += 4 + alen
                    keylen = -1
            trans.append((ttype, tid, keylen))
            q = tend
        if q != end:
            return None
        props.append((num, proto, spi, trans))
        pos = end
        if last == _LAST:
            break
    if pos != n or not props:
        return None
    return props


def encode_sa(proposals):
    out = []
    for i in range(len(proposals)):
        num, proto, spi, trans = proposals[i]
        tparts = []
        for k in range(len(trans)):
            ttype, tid, keylen = trans[k]
            attrs = b"" if keylen is None else struct.pack(">HH", ATTR_TV | ATTR_KEY_LENGTH, keylen)
            tlast = _LAST if k == len(trans) - 1 else _MORE_TRANSFORMS
            tparts.append(struct.pack(">BBHBBH", tlast, 0, 8 + len(attrs), ttype, 0, tid) + attrs)
        tb = b"".join(tparts)
        last = _LAST if i == len(proposals) - 1 else _MORE_PROPOSALS
        out.append(struct.pack(">BBHBBBB", last, 0, 8 + len(spi) + len(tb), num, proto, len(spi), len(trans)) + bytes(spi) + tb)
    return b"".join(out)


# -- KE (§3.4), Nonce (§3.9), ID (§3.5), AUTH (§3.8) ------------------------------


def decode_ke(body):
    if len(body) < 4:
        return None
    return _u16(body, 0), bytes(body[4:])


def encode_ke(group, data):
    return struct.pack(">HH", group, 0) + bytes(data)


def decode_typed(body):
    """ID and AUTH bodies: a one-octet type, three RESERVED, then data."""
    if len(body) < 4:
        return None
    return body[0], bytes(body[4:])


def encode_typed(kind, data):
    return bytes((kind, 0, 0, 0)) + bytes(data)


# -- Notify (§3.10) --------------------------------------------------------------


def decode_notify(body):
    """(type, protocol_id, spi, data) or None (ikebase.ikev2.notify)."""
    return ikev2.notify(body, 0, len(body))


encode_notify = ikev2.notify_body  # (ntype, data=b"", proto=0, spi=b"")


def notifies(payloads):
    """All Notify payloads of a chain as notify tuples; None if one is malformed."""
    out = []
    for p in payloads:
        if p[0] == PT_N:
            n = decode_notify(p[2])
            if n is None:
                return None
            out.append(n)
    return out


# -- Delete (§3.11) --------------------------------------------------------------


def decode_delete(body):
    if len(body) < 4:
        return None
    proto, spi_size, count = body[0], body[1], _u16(body, 2)
    if count > MAX_DELETE_SPIS or len(body) != 4 + spi_size * count:
        return None
    spis = []
    for i in range(count):
        spis.append(bytes(body[4 + i * spi_size : 4 + (i + 1) * spi_size]))
    return proto, spis


def encode_delete(proto, spis):
    size = len(spis[0]) if spis else 0
    return struct.pack(">BBH", proto, size, len(spis)) + b"".join(bytes(s) for s in spis)


# -- Traffic selectors (§3.13) --------------------------------------------------


def decode_ts(body):
    if len(body) < 4:
        return None
    count = body[0]
    if count == 0 or count > MAX_SELECTORS:
        return None
    out = []
    pos = 4
    for _ in range(count):
        if pos + 8 > len(body):
            return None
        ts_type, proto, slen = body[pos], body[pos + 1], _u16(body, pos + 2)
        if slen < 8 or pos + slen > len(body) or (slen - 8) % 2:
            return None
        alen = (slen - 8) // 2
        sport, eport = _u16(body, pos + 4), _u16(body, pos + 6)
        a = pos + 8
        out.append((ts_type, proto, sport, eport, bytes(body[a : a + alen]), bytes(body[a + alen : a + 2 * alen])))
        pos += slen
    if pos != len(body):
        return None
    return out


def encode_ts(selectors):
    parts = [bytes((len(selectors), 0, 0, 0))]
    for ts_type, proto, sport, eport, saddr, eaddr in selectors:
        parts.append(struct.pack(">BBHHH", ts_type, proto, 8 + len(saddr) + len(eaddr), sport, eport) + saddr + eaddr)
    return b"".join(parts)


# -- lookup helpers ----------------------------------------------------------------


def first(payloads, ptype):
    """Body of the first payload of this type, or None."""
    for p in payloads:
        if p[0] == ptype:
            return p[2]
    return None


def count(payloads, ptype):
    n = 0
    for p in payloads:
        if p[0] == ptype:
            n += 1
    return n

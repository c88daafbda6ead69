# Traffic selectors (RFC 7296 §2.9, §3.13): from configuration text to
# selector tuples, and the narrowing a responder does.
#
# A selector is (ts_type, ip_protocol, start_port, end_port, start, end)
# with IPv4 addresses as 4 bytes (TS_IPV4_ADDR_RANGE). Protocol 0 means any;
# ports 0..65535 mean any.

from ike.const import TS_IPV4_ADDR_RANGE


def ipv4(text):
    """Dotted quad -> 4 bytes; ValueError otherwise."""
    parts = text.split(".")
    if len(parts) != 4:
        raise ValueError("not an IPv4 address: %r" % text)
    out = bytearray(4)
    for i in range(4):
        p = parts[i]
        if not p or not p.isdigit() or len(p) > 3:
            raise ValueError("not an IPv4 address: %r" % text)
        v = int(p)
        if v > 255:
            raise ValueError("not an IPv4 address: %r" % text)
        out[i] = v
    return bytes(out)


def ipv4_text(b):
    return "%d.%d.%d.%d" % (b[0], b[1], b[2], b[3])


def from_text(text):
    """'10.2.0.0/24' (or a bare address, /32) -> selector for any protocol
    and port. ValueError on anything else."""
    if "/" in text:
        addr, plen = text.split("/", 1)
        if not plen.isdigit() or int(plen) > 32:
            raise ValueError("bad prefix length in %r" % text)
        plen = int(plen)
    else:
        addr, plen = text, 32
    a = int.from_bytes(ipv4(addr), "big")
    mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
    start = a & mask
    end = start | (~mask & 0xFFFFFFFF)
    return (TS_IPV4_ADDR_RANGE, 0, 0, 65535, start.to_bytes(4, "big"), end.to_bytes(4, "big"))


def to_text(sel):
    ts_type, proto, sp, ep, s, e = sel
    if ts_type != TS_IPV4_ADDR_RANGE:
        return "ts-type-%d" % ts_type
    out = "%s-%s" % (ipv4_text(s), ipv4_text(e))
    a = int.from_bytes(s, "big")
    b = int.from_bytes(e, "big")
    size = b - a + 1
    if size > 0 and size & (size - 1) == 0 and a % size == 0:
        n = 32
        while size > 1:
            size >>= 1
            n -= 1
        out = "%s/%d" % (ipv4_text(s), n)
    if proto:
        out += "[%d" % proto
        if (sp, ep) != (0, 65535):
            out += "/%d-%d" % (sp, ep)
        out += "]"
    return out


def _intersect(a, b):
    if a[0] != TS_IPV4_ADDR_RANGE or b[0] != TS_IPV4_ADDR_RANGE:
        return None
    if len(a[4]) != 4 or len(a[5]) != 4 or len(b[4]) != 4 or len(b[5]) != 4:
        return None
    if a[1] == 0:
        proto = b[1]
    elif b[1] == 0 or a[1] == b[1]:
        proto = a[1]
    else:
        return None
    sp = max(a[2], b[2])
    ep = min(a[3], b[3])
    if sp > ep:
        return None
    s = max(a[4], b[4])  # 4-byte big-endian strings compare as numbers
    e = min(a[5], b[5])
    if s > e:
        return None
    return (TS_IPV4_ADDR_RANGE, proto, sp, ep, s, e)


def narrow(offered, configured):
    """RFC 7296 §2.9: the responder "narrows" the initiator's selectors to a
    subset of its policy. Returns the non-empty intersections (each offered
    selector with each configured one), or [] when nothing is acceptable."""
    out = []
    for o in offered:
        for c in configured:
            x = _intersect(o, c)
            if x is not None and x not in out:
                out.append(x)
    return out


def within(result, offered):
    """Every selector of `result` lies inside one of `offered` (an initiator
    checks that the responder only narrowed, never widened)."""
    for r in result:
        ok = False
        for o in offered:
            if _intersect(r, o) == r:
                ok = True
                break
        if not ok:
            return False
    return bool(result)


def contains_ip(sels, addr4):
    for s in sels:
        if s[0] == TS_IPV4_ADDR_RANGE and s[4] <= addr4 <= s[5]:
            return True
    return False

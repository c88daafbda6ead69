# The Configuration payload (RFC 7296 §3.15) for a virtual IP: the device
# asks for its inner address in IKE_AUTH, a gateway with a pool assigns one.
# Loaded only when the configuration asks for it ("tunnel": {"virtual_ip":
# true} on a device, "tunnel": {"pool": ...} on a gateway): a device with a
# fixed inner address never imports this module.
#
#   initiator:  HDR, SK {IDi, [IDr,] AUTH, CP(CFG_REQUEST), SAi2, TSi, TSr} -->
#   responder:              <-- HDR, SK {IDr, AUTH, CP(CFG_REPLY), SAr2, TSi, TSr}
#
# §3.15.1: CFG Type (1) | RESERVED (3) | attributes, each
#   R (1 bit, 0) | Attribute Type (15 bits) | Length (2) | Value (Length)
# A request carries INTERNAL_IP4_ADDRESS (and INTERNAL_IP4_DNS) with length
# 0; the reply carries the values. §2.19: the responder narrows TSi to the
# address it assigned, which is why a roadwarrior device offers 0.0.0.0/0.

import struct

from ike import ts as tsmod

CFG_REQUEST = 1
CFG_REPLY = 2
INTERNAL_IP4_ADDRESS = 1
INTERNAL_IP4_NETMASK = 2
INTERNAL_IP4_DNS = 3
MAX_ATTRS = 32  # more attributes than any reply we can use: refused


def request(dns=True):
    """CP(CFG_REQUEST) body: INTERNAL_IP4_ADDRESS [, INTERNAL_IP4_DNS], empty."""
    body = struct.pack(">B3xHH", CFG_REQUEST, INTERNAL_IP4_ADDRESS, 0)
    if dns:
        body += struct.pack(">HH", INTERNAL_IP4_DNS, 0)
    return body


def decode(body):
    """(cfg type, [(attribute type, value bytes)]) or None when malformed."""
    n = len(body)
    if n < 4:
        return None
    out = []
    pos = 4
    while pos < n:
        if pos + 4 > n or len(out) >= MAX_ATTRS:
            return None
        t = ((body[pos] << 8) | body[pos + 1]) & 0x7FFF
        ln = (body[pos + 2] << 8) | body[pos + 3]
        if pos + 4 + ln > n:
            return None
        out.append((t, bytes(body[pos + 4 : pos + 4 + ln])))
        pos += 4 + ln
    return body[0], out


def parse_reply(body):
    """(address 4 bytes or None, [dns 4 bytes, ...]) from a CFG_REPLY body,
    or None when it is malformed or not a reply. Values of the wrong length
    are ignored (a 0.0.0.0 address too: it assigns nothing)."""
    d = decode(body)
    if d is None or d[0] != CFG_REPLY:
        return None
    addr = None
    dns = []
    for t, v in d[1]:
        if len(v) != 4:
            continue
        if t == INTERNAL_IP4_ADDRESS and addr is None and v != bytes(4):
            addr = v
        elif t == INTERNAL_IP4_DNS and len(dns) < 4:
            dns.append(v)
    return addr, dns


def wants_address(body):
    """A CFG_REQUEST that asks for INTERNAL_IP4_ADDRESS: (True, wants DNS)."""
    d = decode(body)
    if d is None or d[0] != CFG_REQUEST:
        return False, False
    types = [t for t, v in d[1]]
    return INTERNAL_IP4_ADDRESS in types, INTERNAL_IP4_DNS in types


def reply(addr4, dns=()):
    body = struct.pack(">B3xHH", CFG_REPLY, INTERNAL_IP4_ADDRESS, 4) + bytes(addr4)
    for d in dns:
        body += struct.pack(">HH", INTERNAL_IP4_DNS, 4) + bytes(d)
    return body


class Pool:
    """A gateway's address pool (qcd-peer, "tunnel": {"pool":
    "10.3.0.0/24", "dns": ["10.1.0.53"]}): one address per peer identity,
    kept for it (a device that returns after a power cut gets its address
    again, as strongSwan's in-memory pools do), the network and broadcast
    addresses never handed out."""

    def __init__(self, prefix, dns=()):
        sel = tsmod.from_text(prefix)
        self.first = int.from_bytes(sel[4], "big")
        self.last = int.from_bytes(sel[5], "big")
        if self.last - self.first >= 2:  # skip network and broadcast
            self.first += 1
            self.last -= 1
        self.dns = [tsmod.ipv4(d) for d in dns]
        self.leases = {}  # identity (type, data) -> address int

    def assign(self, ident):
        """The address for this identity (4 bytes), or None when the pool is
        exhausted."""
        a = self.leases.get(ident)
        if a is None:
            used = set(self.leases.values())
            for cand in range(self.first, self.last + 1):
                if cand not in used:
                    a = cand
                    break
            else:
                return None
            self.leases[ident] = a
        return a.to_bytes(4, "big")


def pool_of(eng):
    """The Pool a responder's configuration names (made once per engine)."""
    p = getattr(eng, "pool", None)
    if p is None:
        t = eng.cfg.extra.get("tunnel") or {}
        p = Pool(t["pool"], t.get("dns_servers", ()))
        eng.pool = p
    return p


def initiator_wants(cfg):
    """(ask for an address, ask for DNS) from the "tunnel" section."""
    t = cfg.extra.get("tunnel")
    if not isinstance(t, dict) or t.get("virtual_ip") is not True:
        return False, False
    return True, t.get("dns", True) is not False

# The data plane: UDP datagrams (and ICMP echo) through the Child SA, as
# IPv4 inside ESP tunnel mode (RFC 4303 §3.1.2) in UDP (RFC 3948). There is
# no kernel IPsec under MicroPython (lwIP has none), so the packets an app
# sends through the tunnel are built here, byte by byte, and the ones that
# come back are opened here.
#
#   tun = tunnel.Tunnel(engine)          # attaches itself to the engine
#   s = tun.socket(5000)                 # a tunnel UDP port (0: any free one)
#   s.sendto(b"21.5", ("10.1.0.10", 7))  # TunnelError / ValueError if it cannot go
#   s.recvfrom()                         # (payload, (ip, port)) or None
#   tun.sendto(...), tun.recvfrom()      # the same on a default socket
#   tun.address()                        # our inner IPv4 address (text) or None
#   tun.max_payload                      # the largest UDP payload that fits
#
# Rules kept (RFC 4301 §5.1, §5.2: nothing outside the SA's selectors goes
# out or is accepted): a datagram is sent only when its source (our inner
# address, port) lies in the Child SA's TSi and its destination in TSr, with
# the protocol and port ranges of RFC 7296 §3.13.1 (ICMP: Type and Code as a
# 16-bit "port"); an inbound packet is accepted only the same way round and
# only when it is addressed to our inner address. UDP checksums follow RFC
# 768 (sent always; 0 received means "none"); IPv4 header checksums RFC 791.
# An ICMP echo request (RFC 792) that passes these checks is answered, so an
# operator can ping the device's inner address from the gateway's side.
#
# The inner address is, in this order: the virtual IP the gateway assigned
# (CFG_REPLY, ike.config_payload; config "tunnel": {"virtual_ip": true}), the
# configured "tunnel": {"inner_addr": "10.2.0.5"}, or the first host of our
# first traffic selector (the address itself for a /32).
#
# Size: the path MTU (config "tunnel": {"mtu": 1500}) less the outer IPv4 (20)
# and UDP (8) headers, ESP header (8), IV (16), ICV (16), the trailer and the
# padding to the AES block, less the inner IPv4 (20) and UDP (8) headers:
# 1394 octets of payload for an MTU of 1500. Larger payloads raise
# ValueError; we never fragment (RFC 4303 §3.3.4 would let us, but lwIP's
# reassembly on the far side is no reason to fragment ourselves) and drop
# inbound fragments.
#
# Buffers: the IPv4/UDP/ESP packet is built in one bytearray allocated with
# the Tunnel (struct.pack_into, checksums over a memoryview); per datagram
# the crypto adapter still returns its ciphertext and MAC as new objects,
# and the datagram handed to the shell is one copy. Inbound, the engine's
# ICV check and decryption give one plaintext object; the payload put on a
# socket's queue is a slice of it.
#
# Not here (docs/ike.md says why): TCP, IP fragmentation, IPv6, IP options
# on what we send, ICMP errors (port unreachable) for datagrams nobody reads.

import struct

from ike import esp
from ike import ts as tsmod
from ike.const import TS_IPV4_ADDR_RANGE
from ike.keymat import BLOCK, ICV_LEN

PROTO_ICMP = 1
PROTO_UDP = 17
IP_HDR = 20
UDP_HDR = 8
OUTER = IP_HDR + UDP_HDR  # the outer IPv4 + UDP header of ESP-in-UDP
ESP_FIXED = esp.ESP_HDR + BLOCK + ICV_LEN  # SPI, Sequence, IV ... ICV
DEFAULT_MTU = 1500
MIN_MTU = 576  # RFC 791: every host must accept 576-octet datagrams
MAX_MTU = 9000
DEFAULT_QUEUE = 8  # datagrams held per socket before new ones are dropped
EPHEMERAL = 49152  # RFC 6335 §6: dynamic ports 49152..65535
TTL = 64

COUNTER_NAMES = (
    "sent",  # UDP datagrams we sent
    "received",  # UDP datagrams queued on a socket
    "echo_answered",  # ICMP echo requests answered
    "echo_replies",  # ICMP echo replies to our ping()
    "dropped_selector",  # inbound packets outside the SA's selectors or not for us
    "dropped_malformed",  # not a well-formed IPv4 packet / UDP / ICMP
    "dropped_checksum",  # IPv4, UDP or ICMP checksum wrong
    "dropped_fragment",  # IPv4 fragments (we do not reassemble)
    "dropped_protocol",  # neither UDP nor ICMP echo request
    "dropped_no_socket",  # UDP to a port nobody opened
    "dropped_queue_full",  # the socket's queue was full
)


class TunnelError(Exception):
    """The datagram cannot go: no Child SA is up, no inner address, or its
    addresses are outside the traffic selectors."""


def settings(cfg):
    """The "tunnel" section of the configuration (Config.extra), checked:
    (virtual_ip, inner_addr as 4 bytes or None, mtu, queue).
    ValueError says what is wrong."""
    t = cfg.extra.get("tunnel")
    if t is None:
        t = {}
    if not isinstance(t, dict):
        raise ValueError("tunnel must be an object")
    for k in t:
        if k not in ("virtual_ip", "inner_addr", "mtu", "queue", "dns", "pool", "dns_servers"):
            raise ValueError("tunnel.%s is not a known key" % k)
    vip = t.get("virtual_ip", False)
    if not isinstance(vip, bool):
        raise ValueError("tunnel.virtual_ip must be true or false")
    inner = t.get("inner_addr")
    if inner is not None:
        try:
            inner = tsmod.ipv4(inner)
        except (ValueError, AttributeError):
            raise ValueError("tunnel.inner_addr must be a dotted IPv4 address")
    mtu = t.get("mtu", DEFAULT_MTU)
    if not isinstance(mtu, int) or isinstance(mtu, bool) or not MIN_MTU <= mtu <= MAX_MTU:
        raise ValueError("tunnel.mtu must be an integer %d..%d" % (MIN_MTU, MAX_MTU))
    q = t.get("queue", DEFAULT_QUEUE)
    if not isinstance(q, int) or isinstance(q, bool) or not 1 <= q <= 64:
        raise ValueError("tunnel.queue must be an integer 1..64")
    if not isinstance(t.get("dns", True), bool):
        raise ValueError("tunnel.dns must be true or false")
    if t.get("pool") is not None:
        try:
            tsmod.from_text(t["pool"])
        except (ValueError, AttributeError, TypeError):
            raise ValueError("tunnel.pool must be an IPv4 prefix like \"10.3.0.0/24\"")
    ds = t.get("dns_servers", [])
    if not isinstance(ds, list) or len(ds) > 4:
        raise ValueError("tunnel.dns_servers must be a list of up to 4 IPv4 addresses")
    for d in ds:
        try:
            tsmod.ipv4(d)
        except (ValueError, AttributeError):
            raise ValueError("tunnel.dns_servers: %r is not a dotted IPv4 address" % (d,))
    return vip, inner, mtu, q


def max_inner(mtu):
    """Largest inner IPv4 packet an ESP-in-UDP packet of `mtu` octets
    carries: the encrypted part (inner packet, Pad Length, Next Header,
    padding) is a whole number of AES blocks."""
    return (mtu - OUTER - ESP_FIXED) // BLOCK * BLOCK - 2


def _sum(buf):
    """The ones' complement sum (RFC 1071) of buf as 16-bit words, in
    1..0xFFFF (0 only for all-zero data). 2^16 = 1 mod 0xFFFF, so the sum is
    the big-endian number mod 0xFFFF: one int.from_bytes in C instead of a
    Python loop over the words."""
    n = int.from_bytes(buf, "big")
    if len(buf) & 1:
        n <<= 8
    s = n % 0xFFFF
    if s == 0 and n:
        s = 0xFFFF
    return s


def _fold(s):
    s = s % 0xFFFF
    return 0xFFFF if s == 0 else s


def _match(sels, addr4, proto, port):
    """RFC 7296 §3.13.1: the address, IP protocol (0: any) and port range of
    one of the selectors admit the packet."""
    for s in sels:
        if s[0] == TS_IPV4_ADDR_RANGE and (s[1] == 0 or s[1] == proto) and s[2] <= port <= s[3] and s[4] <= addr4 <= s[5]:
            return True
    return False


def _first_host(sel):
    a = int.from_bytes(sel[4], "big")
    if sel[5] != sel[4]:
        a += 1
    return a.to_bytes(4, "big")


class UdpSocket:
    """One UDP port of ours inside the tunnel, with a bounded receive queue."""

    __slots__ = ("tunnel", "port", "queue", "event", "closed")

    def __init__(self, tunnel, port):
        self.tunnel = tunnel
        self.port = port
        self.queue = []  # (payload, (ip text, port))
        self.event = None  # set by ike.aio to wake a waiting task
        self.closed = False

    def sendto(self, payload, addr):
        if self.closed:
            raise TunnelError("socket is closed")
        return self.tunnel._send_udp(self.port, payload, addr)

    def recvfrom(self):
        """(payload, (ip, port)) of the oldest datagram, or None."""
        if self.queue:
            return self.queue.pop(0)
        return None

    def close(self):
        if not self.closed:
            self.closed = True
            self.queue = []
            self.tunnel._sockets.pop(self.port, None)


class Tunnel:
    def __init__(self, engine, mtu=None, queue=None, inner_addr=None):
        vip, inner, cmtu, cq = settings(engine.cfg)
        self.engine = engine
        self.mtu = mtu or cmtu
        self.queue_len = queue or cq
        self.want_vip = vip
        self.inner = tsmod.ipv4(inner_addr) if inner_addr else inner
        self.max_payload = max_inner(self.mtu) - IP_HDR - UDP_HDR
        # SPI | Seq | IV | inner IPv4 | UDP | payload | padding | PadLen | NH | ICV
        self._tx = bytearray(esp.ESP_HDR + BLOCK + max_inner(self.mtu) + 2 + ICV_LEN)
        self._mv = memoryview(self._tx)
        self._sockets = {}
        self._next_port = EPHEMERAL
        self._ident = 0
        self._default = None
        self.wake = None  # callable() the I/O loop sets to send at once (ike.aio)
        self.replies = []  # (ip text, identifier, sequence) of echo replies to ping(), newest last
        self.counters = {}
        for n in COUNTER_NAMES:
            self.counters[n] = 0
        engine.tunnel = self

    # -- the app side ------------------------------------------------------------

    def socket(self, port=0):
        """A UdpSocket on `port` of our inner address (0: a free port from
        49152 up). OSError-free: ValueError if the port is taken or bad."""
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError("port must be 0..65535")
        if port == 0:
            for _ in range(16384):
                p = self._next_port
                self._next_port = EPHEMERAL if p >= 65535 else p + 1
                if p not in self._sockets:
                    port = p
                    break
            else:
                raise ValueError("no free tunnel port")
        elif port in self._sockets:
            raise ValueError("tunnel port %d is in use" % port)
        s = UdpSocket(self, port)
        self._sockets[port] = s
        return s

    def _default_socket(self):
        if self._default is None or self._default.closed:
            self._default = self.socket(0)
        return self._default

    def sendto(self, payload, addr):
        return self._default_socket().sendto(payload, addr)

    def recvfrom(self):
        return self._default_socket().recvfrom()

    def ping(self, host, seq, data=b"qcd"):
        """Send an ICMP echo request (RFC 792) to `host` through the tunnel;
        its reply lands in `replies`. TunnelError / ValueError as sendto."""
        try:
            dst4 = tsmod.ipv4(host)
        except (ValueError, TypeError, AttributeError):
            raise ValueError("host must be a dotted IPv4 address")
        m = 8 + len(data)
        if IP_HDR + m > max_inner(self.mtu):
            raise ValueError("echo data too long")
        hit = self._child(dst4, PROTO_ICMP, 0x0800)
        if hit is None:
            raise TunnelError("no Child SA is up" if self._child(None) is None else "%s is outside the traffic selectors" % host)
        child, sa = hit
        src4 = self._source(child)
        if src4 is None or not _match(child.ts_local, src4, PROTO_ICMP, 0x0800):
            raise TunnelError("no inner address inside the traffic selectors")
        o = esp.ESP_HDR + BLOCK
        i = o + IP_HDR
        struct.pack_into(">BBHHH", self._tx, i, 8, 0, 0, 0x5143, seq & 0xFFFF)
        self._tx[i + 8 : i + m] = data
        struct.pack_into(">H", self._tx, i + 2, 0xFFFF - _sum(self._mv[i : i + m]))
        self._ip(o, m, PROTO_ICMP, src4, dst4)
        self._seal(child, sa, IP_HDR + m)

    def address(self):
        """Our inner address as text, once a Child SA is up (None before)."""
        c = self._child(None)
        if c is None:
            return None
        a = self._source(c[0])
        return tsmod.ipv4_text(a) if a is not None else None

    def status(self):
        return {"address": self.address(), "max_payload": self.max_payload, "sockets": sorted(self._sockets), "counters": dict(self.counters)}

    # -- choosing the SA ----------------------------------------------------------

    def _source(self, child):
        vip = getattr(self.engine, "virtual_ip", None)
        if self.want_vip:
            return vip  # None until the gateway assigned one
        if self.inner is not None:
            return self.inner
        return _first_host(child.ts_local[0])

    def _child(self, dst4, proto=0, port=0):
        """(child, ike_sa) of the newest installed Child SA whose peer
        selectors admit dst4 (any, when dst4 is None); else the newest such
        one being rekeyed (RFC 7296 §2.8: the old SA carries the traffic
        until its successor is up)."""
        best = None
        for sa in self.engine.sas.values():
            if not sa.up():
                continue
            for c in sa.children:
                if c.state != "INSTALLED" and c.state != "REKEYING":
                    continue
                if dst4 is not None and not _match(c.ts_peer, dst4, proto, port):
                    continue
                rank = (c.state == "INSTALLED", sa.idx, c.created)
                if best is None or rank > best[2]:
                    best = (c, sa, rank)
        return None if best is None else best[:2]

    # -- out ----------------------------------------------------------------------

    def _send_udp(self, sport, payload, addr):
        n = len(payload)
        if n > self.max_payload:
            raise ValueError("a payload of %d octets does not fit: the tunnel carries at most %d (MTU %d)" % (n, self.max_payload, self.mtu))
        try:
            host, dport = addr
            dst4 = tsmod.ipv4(host)
        except (ValueError, TypeError, AttributeError):
            raise ValueError("addr must be (dotted IPv4 address, port)")
        if not isinstance(dport, int) or not 0 < dport <= 65535:
            raise ValueError("port must be 1..65535")
        hit = self._child(dst4, PROTO_UDP, dport)
        if hit is None:
            if self._child(None) is None:
                raise TunnelError("no Child SA is up")
            raise TunnelError("%s:%d is outside the traffic selectors" % (host, dport))
        child, sa = hit
        src4 = self._source(child)
        if src4 is None:
            raise TunnelError("no inner address (the gateway assigned no virtual IP)")
        if not _match(child.ts_local, src4, PROTO_UDP, sport):
            raise TunnelError("our address %s port %d is outside the traffic selectors" % (tsmod.ipv4_text(src4), sport))
        buf = self._tx
        o = esp.ESP_HDR + BLOCK  # inner packet starts after SPI, Seq, IV
        u = o + IP_HDR
        ulen = UDP_HDR + n
        buf[u + UDP_HDR : u + ulen] = payload
        # RFC 768: the checksum covers a pseudo-header (source, destination,
        # zero, protocol, UDP length), the header and the data; a computed 0
        # is sent as all ones (0 means "no checksum").
        struct.pack_into(">HHHH", buf, u, sport, dport, ulen, 0)
        s = _sum(src4) + _sum(dst4) + PROTO_UDP + ulen + _sum(self._mv[u : u + ulen])
        ck = 0xFFFF - _fold(s)
        struct.pack_into(">H", buf, u + 6, ck or 0xFFFF)
        self._ip(o, ulen, PROTO_UDP, src4, dst4)
        self._seal(child, sa, IP_HDR + ulen)
        self.counters["sent"] += 1
        return n

    def _ip(self, o, plen, proto, src4, dst4):
        self._ident = (self._ident + 1) & 0xFFFF
        buf = self._tx
        # RFC 791 header, no options; DF clear (RFC 6864 §4.1: the ID need
        # only be unique per source, destination and protocol)
        struct.pack_into(">BBHHHBBH", buf, o, 0x45, 0, IP_HDR + plen, self._ident, 0, TTL, proto, 0)
        buf[o + 12 : o + 16] = src4
        buf[o + 16 : o + 20] = dst4
        struct.pack_into(">H", buf, o + 10, 0xFFFF - _sum(self._mv[o : o + IP_HDR]))

    def _seal(self, child, sa, inner_len):
        """ESP (RFC 4303 §2) around the inner packet already in the buffer,
        handed to the engine for sending on the NAT-T port."""
        eng = self.engine
        if not sa.natt:
            raise TunnelError("ESP needs UDP encapsulation: the IKE SA is not on the NAT-T port")
        child.seq_out += 1
        pkt = esp.seal_into(self._tx, inner_len, child.spi_out, child.seq_out, child.keys[2], child.mac_out, esp.NEXT_IPV4, eng.rng(BLOCK))
        child.packets_out += 1
        eng.emit_esp(pkt, sa)
        if self.wake is not None:
            self.wake()

    # -- in -----------------------------------------------------------------------

    def esp_in(self, child, sa, next_header, pkt, now):
        """An ESP payload that passed ICV and replay checks (ike.engine)."""
        if next_header == esp.NEXT_NONE:
            return  # RFC 4303 §2.6: a dummy packet, discarded silently
        c = self.counters
        n = len(pkt)
        if next_header != esp.NEXT_IPV4 or n < IP_HDR or pkt[0] >> 4 != 4:
            c["dropped_malformed"] += 1
            return
        hl = (pkt[0] & 15) * 4
        total = (pkt[2] << 8) | pkt[3]
        if hl < IP_HDR or total < hl or total > n:
            c["dropped_malformed"] += 1
            return
        if _sum(memoryview(pkt)[:hl]) != 0xFFFF:
            c["dropped_checksum"] += 1
            return
        if pkt[6] & 0x3F or pkt[7]:  # MF or a fragment offset
            c["dropped_fragment"] += 1
            return
        proto = pkt[9]
        src4 = pkt[12:16]
        dst4 = pkt[16:20]
        body = memoryview(pkt)[hl:total]  # bytes after `total` are TFC padding (RFC 4303 §2.7)
        ours = self._source(child)
        if proto == PROTO_UDP:
            if len(body) < UDP_HDR:
                c["dropped_malformed"] += 1
                return
            sport = (body[0] << 8) | body[1]
            dport = (body[2] << 8) | body[3]
            ulen = (body[4] << 8) | body[5]
            if ulen < UDP_HDR or ulen > len(body):
                c["dropped_malformed"] += 1
                return
            if dst4 != ours or not _match(child.ts_peer, src4, PROTO_UDP, sport) or not _match(child.ts_local, dst4, PROTO_UDP, dport):
                c["dropped_selector"] += 1
                return
            if (body[6] or body[7]) and _fold(_sum(src4) + _sum(dst4) + PROTO_UDP + ulen + _sum(body[:ulen])) != 0xFFFF:
                c["dropped_checksum"] += 1
                return
            s = self._sockets.get(dport)
            if s is None:
                c["dropped_no_socket"] += 1
                return
            if len(s.queue) >= self.queue_len:
                c["dropped_queue_full"] += 1
                return
            s.queue.append((bytes(body[UDP_HDR:ulen]), (tsmod.ipv4_text(src4), sport)))
            c["received"] += 1
            if s.event is not None:
                s.event.set()
            return
        if proto == PROTO_ICMP and len(body) >= 8 and body[0] == 8 and body[1] == 0:
            # RFC 792 echo request -> echo reply: same identifier, sequence
            # and data, addresses swapped
            if dst4 != ours or not _match(child.ts_peer, src4, PROTO_ICMP, 0x0800) or not _match(child.ts_local, dst4, PROTO_ICMP, 0x0800):
                c["dropped_selector"] += 1
                return
            if _sum(body) != 0xFFFF:
                c["dropped_checksum"] += 1
                return
            if not _match(child.ts_local, dst4, PROTO_ICMP, 0) or not _match(child.ts_peer, src4, PROTO_ICMP, 0):
                c["dropped_selector"] += 1  # the reply (type 0) would be outside them
                return
            m = len(body)
            if IP_HDR + m > max_inner(self.mtu):
                c["dropped_malformed"] += 1
                return
            o = esp.ESP_HDR + BLOCK
            i = o + IP_HDR
            buf = self._tx
            buf[i : i + m] = body
            buf[i] = 0
            buf[i + 2] = 0
            buf[i + 3] = 0
            struct.pack_into(">H", buf, i + 2, 0xFFFF - _sum(self._mv[i : i + m]))
            self._ip(o, m, PROTO_ICMP, dst4, src4)
            try:
                self._seal(child, sa, IP_HDR + m)
            except TunnelError:
                c["dropped_protocol"] += 1
                return
            c["echo_answered"] += 1
            return
        if proto == PROTO_ICMP and len(body) >= 8 and body[0] == 0 and body[1] == 0:
            if dst4 != ours or not _match(child.ts_peer, src4, PROTO_ICMP, 0) or not _match(child.ts_local, dst4, PROTO_ICMP, 0):
                c["dropped_selector"] += 1
                return
            if _sum(body) != 0xFFFF:
                c["dropped_checksum"] += 1
                return
            if len(self.replies) >= self.queue_len:
                self.replies.pop(0)
            self.replies.append((tsmod.ipv4_text(src4), (body[4] << 8) | body[5], (body[6] << 8) | body[7]))
            c["echo_replies"] += 1
            return
        c["dropped_protocol"] += 1

# What the engine holds per IKE SA and per Child SA, and the one request an
# IKE SA may have outstanding (RFC 7296 §2.3: we use a window size of 1).

from ike import crypto, state


class Request:
    """Our outstanding request on an IKE SA: the datagram as sent (resent
    unchanged on retransmission, §2.1), what it is for, and its timers."""

    __slots__ = ("kind", "exchange", "msg_id", "data", "ctx", "sent", "tries", "due")

    def __init__(self, kind, exchange, msg_id, data, ctx, now, due):
        self.kind = kind  # "init", "auth", "liveness", "delete_ike", ...
        self.exchange = exchange
        self.msg_id = msg_id
        self.data = data
        self.ctx = ctx
        self.sent = now
        self.tries = 0
        self.due = due


class IkeSa:
    __slots__ = (
        "spi_i",
        "spi_r",
        "initiator",
        "state",
        "peer",
        "natt",
        "nat_detected",
        "group",
        "dh",
        "ni",
        "nr",
        "keys",
        "init_req",
        "init_resp",
        "cookie",
        "cookie_tries",
        "my_msg_id",
        "peer_msg_id",
        "request",
        "last_response",
        "tasks",
        "children",
        "created",
        "established",
        "last_recv",
        "peer_id",
        "collision",
        "successor",
        "reported",
        "idx",
    )

    def __init__(self, spi_i, spi_r, initiator, peer, natt, now):
        self.spi_i = spi_i
        self.spi_r = spi_r
        self.initiator = initiator  # we are the original initiator (§2.2)
        self.state = state.NEW
        self.peer = peer  # (ip, port) the SA talks to
        self.natt = natt  # True: on the NAT-T port, with non-ESP markers
        self.nat_detected = False
        self.group = None
        self.dh = None
        self.ni = None
        self.nr = None
        self.keys = None  # keymat.IkeKeys
        self.init_req = None  # RealMessage1 (§2.15)
        self.init_resp = None  # RealMessage2
        self.cookie = None
        self.cookie_tries = 0
        self.my_msg_id = 0  # next request we send (§2.2)
        self.peer_msg_id = 0  # next request we expect
        self.request = None  # our outstanding Request
        self.last_response = None  # (msg_id, datagram, request digest) for retransmitted requests
        self.tasks = []  # exchanges waiting for the window: (kind, arg)
        self.children = []
        self.created = now
        self.established = None
        self.last_recv = now
        self.peer_id = None  # (id_type, data) once authenticated
        self.collision = None  # peer's rekey that crossed ours (§2.8.2)
        self.successor = None  # the IKE SA that replaced this one
        self.reported = False  # the hook and events saw it established
        self.idx = 0  # serial number, for logs

    @property
    def local_spi(self):
        return self.spi_i if self.initiator else self.spi_r

    def spis(self):
        return self.spi_i, self.spi_r

    def name(self):
        return "%s/%s" % (self.spi_i.hex(), self.spi_r.hex())

    def up(self):
        return state.is_up(self.state)


class ChildSa:
    __slots__ = (
        "spi_in",
        "spi_out",
        "keys",
        "mac_in",
        "mac_out",
        "ts_local",
        "ts_peer",
        "state",
        "initiator",
        "seq_out",
        "replay",
        "created",
        "collision",
        "rekey_of",
        "packets_in",
        "packets_out",
        "rekeyed_at",
    )

    def __init__(self, spi_in, spi_out, keys, ts_local, ts_peer, initiator, now):
        self.spi_in = spi_in  # int: our inbound SPI (we chose it)
        self.spi_out = spi_out  # int: the peer's inbound SPI
        # (encr_in, integ_in, encr_out, integ_out)
        self.keys = keys
        # the integrity keys as crypto.hmac_key, made once for every packet (ike.esp)
        self.mac_in = crypto.hmac_key(keys[1])
        self.mac_out = crypto.hmac_key(keys[3])
        self.ts_local = ts_local
        self.ts_peer = ts_peer
        self.state = state.INSTALLED
        self.initiator = initiator  # we initiated the exchange that made it
        self.seq_out = 0
        self.replay = None
        self.created = now
        self.collision = None  # peer's rekey of this SA that crossed ours
        self.rekey_of = None  # the Child SA this one replaces
        self.packets_in = 0
        self.packets_out = 0
        self.rekeyed_at = None  # when a peer's rekey replaced it (it awaits the peer's Delete)

    def name(self):
        return "%08x/%08x" % (self.spi_in, self.spi_out)

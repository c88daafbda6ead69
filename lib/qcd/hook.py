# QcdHook: RFC 6290 behind the notify hook an IKE engine calls.
#
# The IKE engine (lib/ike, or any other) knows nothing of QCD; it calls these
# methods at fixed points of the protocol (design.md principle 2, and
# docs/hook.md for the contract). Like strongSwan's bus listeners (listener.h:
# ike_updown, ike_rekey, child_updown), one method per protocol event, named
# after it; like h11, sans-I/O: the engine passes bytes, its SA objects,
# addresses and `now` (integer milliseconds, monotonic) and gets bytes and
# verdicts back. Nothing here opens a socket or reads a clock.
#
# The hook only dispatches. The maker (qcd.maker) owns what it must never
# answer for (RFC 6290 §9.2) and the §8.2 Child SPI map; the taker
# (qcd.taker) owns the tokens it keeps. An unprotected datagram comes in
# parsed (ikebase.ikev2.parse, the engine's one parse; bytes from another
# engine are parsed here, once) and the parsed message is passed down.
#
# Every entry point is a wall: whatever bytes arrive, it returns an answer or
# nothing and never raises into the engine (principle 5). An exception that
# still escapes the logic below is a bug: it is counted ("internal_error") so
# tests and diagnostics see it, and the engine gets the safe default.

from qcd import wire
from qcd.ratelimit import DEFAULT_BURST, DEFAULT_RATE
from qcd.tokens import STYLE_SPIS, fingerprint

# qcd.maker and qcd.taker are imported by QcdHook() for the role it has: a
# device that is only a maker never loads the taker's code, and the reverse.

MAKER = 1
TAKER = 2


def _msg(msg):
    # the engine's parsed message as it is; bytes (another engine, a tool)
    # parsed once here
    return msg if isinstance(msg, wire.Message) else wire.parse(msg)


def _ip(addr):
    # (ip, port) tuple, bare ip string, or None
    if addr is None:
        return None
    if isinstance(addr, tuple):
        return addr[0]
    return addr


class QcdHook:
    """The notify hook with RFC 6290 behind it.

    role        MAKER, TAKER or MAKER | TAKER
    keys        key source (qcdhost.keys.MemoryKeys or the flash store); a maker needs one
    style       STYLE_SPIS (§5.1) or STYLE_ADDR (§5.2)
    protocol_id Protocol ID sent in N(QCD) (1 by default, RFC 6290 §4.1)
    rate, burst token bucket for unprotected answers, one per lane (qcd.ratelimit)
    gateways    addresses (text) of the configured peers: with the peers of
                the §8.2 map, the gateways with a rate-limit lane of their own
    window_ms   answer only this long after boot_ms (None: no window)
    restrict_to_peer  taker accepts tokens only from the SA's peer address
    log         callable taking one line of text, or None

    `sa` arguments are the engine's IKE SA objects: anything with spi_i,
    spi_r (8 octets), initiator (we are the original initiator) and peer
    ((ip, port)).
    """

    def __init__(
        self,
        role=MAKER | TAKER,
        keys=None,
        style=STYLE_SPIS,
        protocol_id=wire.PROTO_IKE,
        rate=DEFAULT_RATE,
        burst=DEFAULT_BURST,
        window_ms=None,
        boot_ms=0,
        restrict_to_peer=False,
        log=None,
        gateways=(),
    ):
        if role & MAKER and keys is None:
            raise ValueError("a token maker needs a key source")
        self.role = role
        self.keys = keys
        self.maker = self.taker = None
        if role & MAKER:
            from qcd.maker import Maker

            self.maker = Maker(keys, style, protocol_id, rate, burst, window_ms, boot_ms, gateways)
        if role & TAKER:
            from qcd.taker import Taker

            self.taker = Taker(restrict_to_peer)
        self.internal_errors = 0
        self._log = log

    def log(self, line):
        if self._log is not None:
            try:
                self._log(line)
            except Exception:
                pass

    def _bug(self, where, e):
        self.internal_errors += 1
        # The type only: an exception's text is never logged here.
        self.log("qcd: internal error in %s: %s" % (where, type(e).__name__))

    def _handover(self, sa, what):
        # §4.2-4.4: the token of the current secret for this IKE SA
        out = self.maker.handover(bytes(sa.spi_i), bytes(sa.spi_r), _ip(sa.peer))
        if out:
            self.log("qcd: token handed over (%s) for IKE SA %s" % (what, _sa(sa.spi_i, sa.spi_r)))
        return out

    def _learn(self, spi_i, spi_r, notifies):
        # §4.2-4.4: the taker keeps (or replaces) the peer's token
        how = self.taker.learn(spi_i, spi_r, notifies)
        if how is not None:
            self.log("qcd: token %s for IKE SA %s" % (how, _sa(spi_i, spi_r)))

    # -- 1. messages we build: one method per message ----------------------------
    # Each returns notifies to add inside SK: [(type, protocol id, data)].

    def auth_request(self, sa, now):
        """Our first IKE_AUTH request (we initiate the IKE SA): our token
        (§4.2)."""
        try:
            return self._handover(sa, "auth_request") if self.maker is not None else []
        except Exception as e:
            self._bug("auth_request", e)
            return []

    def rekey_response(self, sa, now):
        """Our CREATE_CHILD_SA response that rekeys the IKE SA; `sa` is the
        new SA: its token (§4.3)."""
        try:
            return self._handover(sa, "rekey_response") if self.maker is not None else []
        except Exception as e:
            self._bug("rekey_response", e)
            return []

    def address_changed(self, sa, now):
        """The peer's address changed (MOBIKE): a §5.2 token, bound to the
        address, is handed over again (§4.4); a §5.1 token does not change."""
        try:
            m = self.maker
            return self._handover(sa, "address_changed") if m is not None and m.style != STYLE_SPIS else []
        except Exception as e:
            self._bug("address_changed", e)
            return []

    # -- 2. lifecycle and authenticated messages: one method per event ----------

    def ike_created(self, sa, now):
        """The engine holds a new IKE SA under our SPI (IKE_SA_INIT sent or
        answered, a rekey's new SA, our rekey request in flight)."""
        try:
            if self.maker is not None:
                self.maker.ike_created(sa.spi_i if sa.initiator else sa.spi_r)
        except Exception as e:
            self._bug("ike_created", e)

    def ike_up(self, sa, notifies, children, now):
        """IKE_AUTH completed, either role. `notifies`: the peer's, from its
        authenticated IKE_AUTH message; `children`: our inbound ESP SPIs
        (ints) of the Child SAs set up with it. Returns the notifies for our
        IKE_AUTH response when we respond (§4.2), else []."""
        try:
            spi_i, spi_r = bytes(sa.spi_i), bytes(sa.spi_r)
            out = []
            m = self.maker
            if m is not None:
                m.ike_up(spi_i, spi_r, sa.initiator, _ip(sa.peer), children)
                if not sa.initiator:
                    out = self._handover(sa, "auth_response")
            if self.taker is not None:
                self._learn(spi_i, spi_r, notifies)
            return out
        except Exception as e:
            self._bug("ike_up", e)
            return []

    def ike_rekey(self, old, new, notifies, now):
        """IKE SA `new` replaced `old` (RFC 7296 §2.8; `old` stays held until
        its ike_down). `notifies`: the peer's, from the CREATE_CHILD_SA
        response when we initiated the rekey (new.initiator). Returns the
        notifies the engine sends in an INFORMATIONAL request on `new` when
        we initiated (§4.3; as responder our token went in rekey_response)."""
        try:
            spi_i, spi_r = bytes(new.spi_i), bytes(new.spi_r)
            out = []
            m = self.maker
            if m is not None:
                m.ike_rekeyed(bytes(old.spi_i), bytes(old.spi_r), spi_i, spi_r, new.initiator)
                if new.initiator:
                    out = self._handover(new, "rekey_initiated")
            if self.taker is not None:
                self._learn(spi_i, spi_r, notifies)
            return out
        except Exception as e:
            self._bug("ike_rekey", e)
            return []

    def protected(self, sa, exchange, notifies, now):
        """Any other protected, authenticated message (request or response)
        of `exchange` on `sa`: its notifies ((type, proto, data) or (type,
        proto, spi, data)). The taker keeps a token it carries (§4.3 after a
        rekey, §4.4). Never a reason to delete. A §8.2 map write the store
        had to postpone for want of memory (qcd.store: pending) is retried
        here: liveness checks come every few seconds."""
        try:
            if self.taker is not None:
                self._learn(bytes(sa.spi_i), bytes(sa.spi_r), notifies)
            if self.maker is not None and getattr(self.keys, "pending", None):
                self.keys.flush()
                self.log("qcd: postponed map writes done")
        except Exception as e:
            self._bug("protected", e)

    def ike_down(self, sa, now):
        """The engine dropped the IKE SA, in any state, for any reason (a
        Delete, a timeout, a QCD verdict, a failed handshake, a rekey's
        linger time): the maker no longer holds it and drops its Child SAs
        from the §8.2 map, the taker forgets its token."""
        try:
            spi_i, spi_r = bytes(sa.spi_i), bytes(sa.spi_r)
            if self.maker is not None:
                self.maker.ike_gone(spi_i, spi_r, sa.initiator)
            if self.taker is not None:
                self.taker.forget(spi_i, spi_r)
        except Exception as e:
            self._bug("ike_down", e)

    def child_up(self, sa, spi_in, now):
        """A Child SA with our inbound ESP SPI `spi_in` (int) was installed
        under `sa` by a Child SA rekey (the first one comes with ike_up)."""
        try:
            if self.maker is not None:
                self.maker.child_up(spi_in, bytes(sa.spi_i), bytes(sa.spi_r), sa.initiator, _ip(sa.peer))
        except Exception as e:
            self._bug("child_up", e)

    def child_down(self, sa, spi_in, now):
        """The Child SA `spi_in` was deleted on its own (those of an IKE SA
        that goes are covered by its ike_down)."""
        try:
            if self.maker is not None:
                self.maker.child_gone(spi_in)
        except Exception as e:
            self._bug("child_down", e)

    # -- 3. unprotected datagrams: parsed once, by the engine ---------------------

    def unknown_ike_spi(self, msg, src, now):
        """An IKE message for SPIs the engine does not hold (parsed, an
        ikebase.ikev2.Message, or bytes): the §4.5 unprotected answer to
        send back to `src`, or None."""
        try:
            m = _msg(msg)
            if self.maker is not None:
                out = self.maker.answer_ike(m, _ip(src), now)
                if out is not None:
                    self.log("qcd: answered INVALID_IKE_SPI + QCD to %s for stale IKE SA %s" % (_addr(src), _sa(m.spi_i, m.spi_r)))
                    return out
            if self.taker is not None and self.taker.unknown(m):
                # A token for an SA we do not hold: log and ignore (§3).
                self.log("qcd: ignored QCD token for unknown IKE SA %s from %s" % (_sa(m.spi_i, m.spi_r), _addr(src)))
            return None
        except Exception as e:
            self._bug("unknown_ike_spi", e)
            return None

    def unprotected(self, msg, src, sa, now):
        """Verdict on an unprotected message whose header names the known IKE
        SA `sa`: True means delete that IKE SA and its Child SAs silently (§3
        step 4). Anything but a verified token is False."""
        try:
            t = self.taker
            if t is None:
                return False
            m = _msg(msg)
            ok = t.judge(m, _ip(src), _ip(sa.peer))
            name = _sa(sa.spi_i, sa.spi_r)
            if ok:
                self.log("qcd: verified token from %s: peer rebooted, delete IKE SA %s" % (_addr(src), name))
            elif m is not None and m.payloads and m.payloads[0][0] == wire.PT_N:
                self.log("qcd: unprotected notify for IKE SA %s from %s not accepted" % (name, _addr(src)))
            return ok
        except Exception as e:
            self._bug("unprotected", e)
            return False

    def unknown_esp_spi(self, packet, src, now):
        """An ESP packet with an SPI no Child SA holds: the §8.2 unprotected
        IKE message to send back to `src` (the engine adds the non-ESP
        marker), or None."""
        try:
            if self.maker is None:
                return None
            out = self.maker.answer_esp(packet, now, _ip(src))
            if out is not None:
                self.log("qcd: answered INVALID_SPI + QCD to %s for stale Child SA %s" % (_addr(src), bytes(packet[0:4]).hex()))
            return out
        except Exception as e:
            self._bug("unknown_esp_spi", e)
            return None

    # -- diagnostics -------------------------------------------------------------

    def status(self):
        """A dict of what this hook holds and did; never a secret or token."""
        st = {"role": ("", "maker", "taker", "maker+taker")[self.role & (MAKER | TAKER)], "internal_errors": self.internal_errors}
        if self.maker is not None:
            st["style"] = "5.1" if self.maker.style == STYLE_SPIS else "5.2"
            st["secrets"] = [fingerprint(s) for s in self.keys.secrets()]
            st["live_ike_sas"] = len(self.maker.held)
            st["child_map"] = self.keys.child_count()
            st["maker"] = dict(self.maker.counters)
        if self.taker is not None:
            st["tokens_held"] = len(self.taker)
            st["taker"] = dict(self.taker.counters)
        return st

    def __repr__(self):
        return "<QcdHook %s>" % self.status()["role"]


def _sa(spi_i, spi_r):
    return "%s/%s" % (bytes(spi_i).hex(), bytes(spi_r).hex())


def _addr(a):
    if isinstance(a, tuple) and len(a) >= 2:
        return "%s:%s" % (a[0], a[1])
    return str(a)

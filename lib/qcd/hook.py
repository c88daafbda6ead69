# QcdHook: RFC 6290 behind the notify hook an IKE engine calls.
#
# The IKE engine (lib/ike, or any other) knows nothing of QCD; it calls these
# methods at fixed points of the protocol (design.md principle 2, and
# docs/hook.md for the contract). Like strongSwan's bus listeners, one object
# with a method per event; like h11, sans-I/O: the engine passes bytes,
# addresses and `now` (integer milliseconds, monotonic) and gets bytes and
# verdicts back. Nothing here opens a socket or reads a clock.
#
# Every entry point is a wall: whatever bytes arrive, it returns an answer or
# nothing and never raises into the engine (principle 5). An exception that
# still escapes the logic below is a bug: it is counted ("internal_error") so
# tests and diagnostics see it, and the engine gets the safe default.

from qcd import wire
from qcd.maker import Maker
from qcd.ratelimit import DEFAULT_BURST, DEFAULT_RATE
from qcd.taker import Taker
from qcd.tokens import STYLE_SPIS, fingerprint

# Moments at which the engine builds a message the hook may add notifies to.
AUTH_REQUEST = "auth_request"  # our first IKE_AUTH request (we initiate)
AUTH_RESPONSE = "auth_response"  # our last IKE_AUTH response (we respond)
REKEY_RESPONSE = "rekey_response"  # our CREATE_CHILD_SA response rekeying the IKE SA
REKEY_INITIATED = "rekey_initiated"  # we initiated an IKE SA rekey; engine sends an INFORMATIONAL
ADDRESS_CHANGED = "address_changed"  # the peer's address changed (MOBIKE); INFORMATIONAL

MAKER = 1
TAKER = 2


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
    rate, burst token bucket for unprotected answers (qcd.ratelimit)
    window_ms   answer only this long after boot_ms (None: no window)
    restrict_to_peer  taker accepts tokens only from the SA's peer address
    log         callable taking one line of text, or None
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
    ):
        if role & MAKER and keys is None:
            raise ValueError("a token maker needs a key source")
        self.role = role
        self.keys = keys
        self.maker = (
            Maker(keys, style, protocol_id, rate, burst, window_ms, boot_ms) if role & MAKER else None
        )
        self.taker = Taker(restrict_to_peer) if role & TAKER else None
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

    # -- 1. building an outgoing message ---------------------------------------

    def notifies_for(self, moment, spi_i, spi_r, initiator, peer):
        """Notifies to add to the message built at `moment`: a list of
        (notify type, protocol id, data); the engine encrypts them in SK."""
        try:
            m = self.maker
            # §4.2-4.4: the first IKE_AUTH request if we initiate, the last
            # response if we respond, the exchange that completes an IKE SA
            # rekey, and an address change only for a §5.2 token (a §5.1
            # token does not depend on addresses).
            if m is None or not (
                moment == AUTH_REQUEST
                and initiator
                or moment == AUTH_RESPONSE
                and not initiator
                or moment == REKEY_RESPONSE
                or moment == REKEY_INITIATED
                or moment == ADDRESS_CHANGED
                and m.style != STYLE_SPIS
            ):
                return []
            out = m.handover(bytes(spi_i), bytes(spi_r), _ip(peer))
            if out:
                self.log("qcd: token handed over (%s) for IKE SA %s" % (moment, _sa(spi_i, spi_r)))
            return out
        except Exception as e:
            self._bug("notifies_for", e)
            return []

    # -- 2. a protected message was accepted -----------------------------------

    def protected(self, exchange, spi_i, spi_r, notifies, now):
        """A protected, authenticated message of `exchange` for IKE SA
        (spi_i, spi_r) carried these notifies: (type, proto, data) tuples (a
        4-tuple with the SPI before data is accepted too). The taker stores or
        replaces the peer's token (§4.2-4.4). Never a reason to delete."""
        try:
            t = self.taker
            if t is None:
                return
            had = t.has(spi_i, spi_r)
            if t.learn(bytes(spi_i), bytes(spi_r), notifies):
                self.log(
                    "qcd: token %s for IKE SA %s"
                    % ("replaced" if had else "stored", _sa(spi_i, spi_r))
                )
        except Exception as e:
            self._bug("protected", e)

    # -- 3. a message for IKE SPIs nobody knows --------------------------------

    def unknown_ike_spi(self, msg, src, now):
        """The §4.5 unprotected answer to send back to `src`, or None."""
        try:
            if self.maker is not None:
                out = self.maker.answer_ike(msg, _ip(src), now)
                if out is not None:
                    self.log("qcd: answered INVALID_IKE_SPI + QCD to %s for stale IKE SA %s" % (_addr(src), _sa(msg[0:8], msg[8:16])))
                    return out
            if self.taker is not None:
                m = wire.parse(msg)
                if m is not None and not m.is_protected() and Taker.qcd_tokens(m) is not None:
                    # A token for an SA we do not hold: log and ignore (§3).
                    self.taker.counters["unknown_sa"] += 1
                    self.log("qcd: ignored QCD token for unknown IKE SA %s from %s" % (_sa(m.spi_i, m.spi_r), _addr(src)))
            return None
        except Exception as e:
            self._bug("unknown_ike_spi", e)
            return None

    # -- 4. an unprotected message for a known IKE SA --------------------------

    def unprotected(self, msg, src, peer, now):
        """Verdict on an unprotected message whose header names a known IKE
        SA whose peer is `peer`: True means delete that IKE SA and its Child
        SAs silently (§3 step 4). Anything but a verified token is False."""
        try:
            t = self.taker
            if t is None:
                return False
            ok = t.verify(msg, _ip(src), _ip(peer), True)
            sa = _sa(msg[0:8], msg[8:16]) if len(msg) >= 16 else "?"
            if ok:
                self.log("qcd: verified token from %s: peer rebooted, delete IKE SA %s" % (_addr(src), sa))
            elif len(msg) >= 28 and msg[16] == wire.PT_N:
                self.log("qcd: unprotected notify for IKE SA %s from %s not accepted" % (sa, _addr(src)))
            return ok
        except Exception as e:
            self._bug("unprotected", e)
            return False

    # -- 5. an ESP packet with an unknown SPI ----------------------------------

    def unknown_esp_spi(self, packet, src, now):
        """The §8.2 unprotected IKE message to send back to `src` (the engine
        adds the non-ESP marker), or None."""
        try:
            if self.maker is None:
                return None
            out = self.maker.answer_esp(packet, now)
            if out is not None:
                self.log("qcd: answered INVALID_SPI + QCD to %s for stale Child SA %s" % (_addr(src), bytes(packet[0:4]).hex()))
            return out
        except Exception as e:
            self._bug("unknown_esp_spi", e)
            return None

    # -- 6. lifecycle: one method per event ------------------------------------
    #
    # `sa` is the engine's IKE SA object: spi_i, spi_r (8 octets), initiator
    # (we are its original initiator), peer ((ip, port)). Every SA reported by
    # ike_created ends with exactly one ike_down.

    def ike_created(self, sa, now):
        """The engine holds a new IKE SA under our SPI (IKE_SA_INIT sent or
        answered, a rekey's new SA, our rekey request in flight)."""
        try:
            if self.maker is not None:
                self.maker.ike_created(sa.spi_i if sa.initiator else sa.spi_r)
        except Exception as e:
            self._bug("ike_created", e)

    def ike_up(self, sa, now):
        """IKE_AUTH completed: the SA is established."""
        try:
            if self.maker is not None:
                self.maker.ike_up(bytes(sa.spi_i), bytes(sa.spi_r), sa.initiator, _ip(sa.peer))
        except Exception as e:
            self._bug("ike_up", e)

    def ike_rekey(self, old, new, now):
        """IKE SA `new` replaced `old` (RFC 7296 §2.8); `old` stays held
        until its ike_down. `new.initiator`: we initiated the rekey."""
        try:
            if self.maker is not None:
                self.maker.ike_rekeyed(bytes(old.spi_i), bytes(old.spi_r), bytes(new.spi_i), bytes(new.spi_r), new.initiator)
        except Exception as e:
            self._bug("ike_rekey", e)

    def ike_down(self, sa, now):
        """The engine dropped the IKE SA, in any state, for any reason (a
        Delete, a timeout, a QCD verdict, a failed handshake, a rekey's
        linger time): the maker no longer holds it, the taker forgets its
        token, and its Child SAs leave the §8.2 map."""
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
        under IKE SA `sa` (the first one, or the new one of a Child SA
        rekey)."""
        try:
            if self.maker is not None:
                self.maker.child_up(spi_in, bytes(sa.spi_i), bytes(sa.spi_r), sa.initiator, _ip(sa.peer))
        except Exception as e:
            self._bug("child_up", e)

    def child_down(self, sa, spi_in, now):
        """The Child SA `spi_in` was deleted (not reported when its IKE SA
        goes: ike_down covers those)."""
        try:
            if self.maker is not None:
                self.maker.child_gone(spi_in)
        except Exception as e:
            self._bug("child_down", e)

    # -- diagnostics -------------------------------------------------------------

    def status(self):
        """A dict of what this hook holds and did; never a secret or token."""
        st = {"role": ("", "maker", "taker", "maker+taker")[self.role & (MAKER | TAKER)], "internal_errors": self.internal_errors}
        if self.maker is not None:
            st["style"] = "5.1" if self.maker.style == STYLE_SPIS else "5.2"
            st["secrets"] = [fingerprint(s) for s in self.keys.secrets()]
            st["live_ike_sas"] = len(self.maker.held)
            if hasattr(self.keys, "child_count"):
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

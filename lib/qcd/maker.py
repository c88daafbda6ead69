# The token maker (RFC 6290 §3, §4.2-4.5, §8.2): the side that may reboot.
#
# It hands its token to the peer inside the protected IKE_AUTH exchange (and
# after IKE SA rekeys), and after a reboot it regenerates the token for a stale
# SA's SPIs and sends it back unprotected, so the peer (the taker) can delete
# the dead SA at once.
#
# RFC 6290 §9.2 is the rule that makes this safe: "the token maker MUST NOT
# send an unprotected QCD token for an IKE SA it holds". An answer for a live
# SA is a forged deletion waiting to happen: the attacker hands it to the
# peer, which deletes the tunnel the device thinks is up. The maker owns the
# set it must never answer for (`held`): the local SPI of every IKE SA the
# engine holds, in any state, fed by the lifecycle events (ike_created ..
# ike_gone): half-open, IKE_AUTH in flight in either role, the new SA of a
# rekey in flight, the old SA a rekey replaced while it lingers, an SA whose
# Delete is in flight. A request is refused when EITHER header SPI is in the
# set, whatever the I flag says: every SA a peer holds with us carries the
# SPI we chose, and we know it before we know the peer's (IKE_SA_INIT sent,
# rekey requested).

from qcd import wire
from qcd.ratelimit import DEFAULT_BURST, DEFAULT_RATE, Lanes
from qcd.tokens import STYLE_ADDR, STYLE_SPIS, ip_bytes, make_token

# Exchanges a stale request may arrive in: anything protected but IKE_SA_INIT
# (RFC 6290 §4.5 answers "a protected request"; IKE_SA_INIT is never
# protected and its responder SPI is still zero). Reserved and unassigned
# exchange numbers are malformed, not answered.
_ANSWERABLE = (wire.IKE_AUTH, wire.CREATE_CHILD_SA, wire.INFORMATIONAL, wire.IKE_INTERMEDIATE)
_ZERO8 = bytes(8)

COUNTER_NAMES = (
    "handed_over",  # tokens put into protected IKE_AUTH / rekey messages
    "answered_ike",  # §4.5 answers: INVALID_IKE_SPI + QCD
    "answered_esp",  # §8.2 answers: INVALID_SPI + QCD
    "refused_malformed",  # not a well-formed IKE message or ESP packet
    "refused_response",  # a response: RFC 7296 §2.21.4 never answers those
    "refused_unprotected",  # first payload not SK/SKF
    "refused_sa_init",  # IKE_SA_INIT or responder SPI zero
    "refused_exchange",  # reserved or unknown exchange type
    "refused_known_sa",  # RFC 6290 §9.2: the SA exists here, in any state
    "refused_unmapped",  # ESP SPI not in the §8.2 map
    "refused_window",  # outside the answer window after boot
    "refused_rate",  # the lane for other sources is empty
    "refused_rate_gateway",  # the known gateways' lane is empty (or someone spoofs them)
    "refused_no_secret",  # the key source holds no secret
    "answered_unknown_gen",  # answers sent as one per candidate token (see _answers)
)


class Maker:
    """Token maker logic, sans-I/O: bytes, addresses and `now` (ms) in.

    keys       the key source (qcdhost.keys interface): secrets and §8.2 map
    style      STYLE_SPIS (RFC 6290 §5.1) or STYLE_ADDR (§5.2)
    protocol_id  sent in N(QCD)'s Protocol ID field (§4.1 says 1)
    rate, burst  token bucket for unprotected answers, one per lane (the
               gateways we know, everyone else: qcd.ratelimit.Lanes);
               rate=None turns the limit off (not recommended outside tests
               and benchmarks)
    window_ms  answer only within this many ms after boot_ms (None: always)
    gateways   addresses (text) of the configured peers; with the peers of
               the §8.2 map they are the known gateways of the rate limit
    """

    def __init__(
        self,
        keys,
        style=STYLE_SPIS,
        protocol_id=wire.PROTO_IKE,
        rate=DEFAULT_RATE,
        burst=DEFAULT_BURST,
        window_ms=None,
        boot_ms=0,
        gateways=(),
    ):
        if style != STYLE_SPIS and style != STYLE_ADDR:
            raise ValueError("token style must be STYLE_SPIS or STYLE_ADDR")
        if not 0 <= protocol_id <= 255:
            raise ValueError("protocol_id must fit one octet")
        self.keys = keys
        self.style = style
        self.protocol_id = protocol_id
        self.bucket = Lanes(rate, burst) if rate else None
        self._configured = [ip_bytes(g) for g in gateways]
        self.gateways = set()  # addresses (bytes) with a lane of their own
        self._refresh_gateways()
        self.window_ms = window_ms
        self.boot_ms = boot_ms
        # §9.2: our SPI of every IKE SA the engine holds, in any state
        self.held = set()
        # SPI-I|SPI-R -> the secret generation of the token handed over for
        # it (this boot); goes into the §8.2 map with its Child SAs
        self.gens = {}
        self.counters = dict.fromkeys(COUNTER_NAMES, 0)

    def _count(self, name):
        self.counters[name] += 1
        return None

    def _taker_addr(self, ip):
        if self.style == STYLE_SPIS:
            return None
        return ip if isinstance(ip, (bytes, bytearray)) else ip_bytes(ip)

    def tokens(self, spi_i, spi_r, taker_ip=None):
        """One candidate token per held secret, current first."""
        addr = self._taker_addr(taker_ip)
        return [make_token(s, spi_i, spi_r, addr) for s in self.keys.secrets()]

    def handover(self, spi_i, spi_r, taker_ip):
        """The N(QCD) to put into a protected message for this IKE SA.

        RFC 6290 §4.2/§4.3: the token of the current secret, in the first
        IKE_AUTH request (we initiate), the last IKE_AUTH response (we
        respond), or the exchange that completes an IKE SA rekey. Returns a
        list of (notify type, protocol id, data).
        """
        secrets = self.keys.secrets()
        if not secrets:
            self._count("refused_no_secret")
            return []
        tok = make_token(secrets[0], spi_i, spi_r, self._taker_addr(taker_ip))
        g = self._current_gen()
        key = bytes(spi_i) + bytes(spi_r)
        if g and self.gens.get(key) != g:
            renew = key in self.gens  # a new token for a mapped SA (§5.2 address change)
            self.gens[key] = g
            if renew:
                for spi, e in self.keys.children():
                    if e[0] == key[:8] and e[1] == key[8:]:
                        self._put(spi, e[0], e[1], e[2], e[3])
        self._count("handed_over")
        return [(wire.QUICK_CRASH_DETECTION, self.protocol_id, tok)]

    # -- which secret made the peer's token -------------------------------------
    #
    # With several secrets (a rollover, RFC 6290 §5) an answer carries one
    # candidate token per secret, and RFC 6290 lets a taker hold and compare
    # them all; but a taker that compares only the first N(QCD) (Rockhopper,
    # issue 11) refuses an answer whose first token is not the one it holds.
    # So the generation of each IKE SA's token is kept with the SA in the
    # §8.2 map (key sources that can: generations(), generation_of()), and
    # the answer puts that token first; when it is not known, one answer per
    # candidate, each led by another token (_answers).

    def _current_gen(self):
        f = getattr(self.keys, "generations", None)
        gens = f() if f is not None else None
        return gens[0] if gens else 0

    def _gen_for_map(self, spi_i, spi_r):
        # The token of an IKE SA is handed over in the exchange that creates
        # it; a responder installs the Child SA just before that, so an SA
        # not handed over yet gets the current generation, as its token will.
        return self.gens.get(bytes(spi_i) + bytes(spi_r)) or self._current_gen()

    def _put(self, spi, spi_i, spi_r, initiator, peer_ip):
        if hasattr(self.keys, "generation_of"):
            self.keys.child_put(spi, spi_i, spi_r, initiator, peer_ip, self._gen_for_map(spi_i, spi_r))
        else:
            self.keys.child_put(spi, spi_i, spi_r, initiator, peer_ip)

    def _answers(self, spi_i, spi_r, taker_ip, build, now, known):
        """The answer (bytes) for stale IKE SA (spi_i, spi_r), or when the
        generation of the peer's token is not known and several secrets are
        held, a tuple of answers, one led by each candidate token (each
        after the first takes one more from the rate limit)."""
        toks = self.tokens(spi_i, spi_r, taker_ip)
        if len(toks) < 2:
            return build(toks)
        f = getattr(self.keys, "generation_of", None)
        g = f(spi_i, spi_r) if f is not None else 0
        gens = self.keys.generations() if g else ()
        if g in gens:
            i = gens.index(g)
            return build([toks[i]] + toks[:i] + toks[i + 1 :])
        out = [build(toks)]
        for i in range(1, len(toks)):
            if self.bucket is not None and not self.bucket.allow(now, known):
                self._count("refused_rate_gateway" if known else "refused_rate")
                break
            out.append(build([toks[i]] + toks[:i] + toks[i + 1 :]))
        self._count("answered_unknown_gen")
        return tuple(out)

    # -- what the engine holds (RFC 6290 §9.2) and the §8.2 map -----------------

    def holds(self, spi_i, spi_r):
        """§9.2: True when either SPI is ours for an IKE SA held here."""
        return spi_i in self.held or spi_r in self.held

    def ike_created(self, spi):
        """The engine holds a new IKE SA under our SPI `spi` (any state)."""
        self.held.add(bytes(spi))

    def ike_up(self, spi_i, spi_r, initiator, peer_ip, children=()):
        """IKE_AUTH done, with the Child SAs `children` (our inbound ESP
        SPIs). A new IKE SA with this peer (with INITIAL_CONTACT, RFC 7296
        §2.4) ends every older SA the peer held with us: §8.2 map entries for
        the peer whose IKE SA is not held here go; the new ones come in."""
        self.held.add(bytes(spi_i if initiator else spi_r))
        try:
            pip = ip_bytes(peer_ip)
        except (ValueError, TypeError, AttributeError):
            return  # no address: nothing to prune, no entry a §8.2 answer could use
        keys = self.keys
        stale = []
        for spi, e in keys.children():
            if e[3] == pip and (e[0] if e[2] else e[1]) not in self.held:
                stale.append(spi)
        for spi in stale:
            keys.child_drop(spi)
        for spi in children:
            self._put(spi, spi_i, spi_r, initiator, pip)
        self._refresh_gateways()

    def ike_rekeyed(self, old_i, old_r, spi_i, spi_r, initiator):
        """IKE SA (spi_i, spi_r) replaced (old_i, old_r): its Child SAs move
        with it in the §8.2 map (RFC 7296 §2.8). The old SA stays held until
        its ike_gone: the peer may use it until it reads our answer."""
        self.held.add(bytes(spi_i if initiator else spi_r))
        keys = self.keys
        for spi, e in keys.children():
            if e[0] == old_i and e[1] == old_r:
                self._put(spi, spi_i, spi_r, initiator, e[3])

    def ike_gone(self, spi_i, spi_r, initiator):
        """The engine dropped the IKE SA (any state, any reason): no longer
        held, and its Child SAs leave the §8.2 map."""
        self.held.discard(bytes(spi_i if initiator else spi_r))
        self.gens.pop(bytes(spi_i) + bytes(spi_r), None)
        keys = self.keys
        gone = [spi for spi, e in keys.children() if e[0] == spi_i and e[1] == spi_r]
        for spi in gone:
            keys.child_drop(spi)
        if gone:
            self._refresh_gateways()

    def child_up(self, spi, spi_i, spi_r, initiator, peer_ip):
        """A Child SA with our inbound ESP SPI `spi` (int) under IKE SA
        (spi_i, spi_r): into the §8.2 map."""
        self._put(spi, spi_i, spi_r, initiator, ip_bytes(peer_ip))
        self._refresh_gateways()

    def child_gone(self, spi):
        self.keys.child_drop(spi)
        self._refresh_gateways()

    # -- answers ---------------------------------------------------------------

    def _refresh_gateways(self):
        # The maker owns the map, so every change comes through here: the
        # set is rebuilt then, not per request.
        g = set(self._configured)
        for _spi, e in self.keys.children():
            g.add(bytes(e[3]))
        self.gateways = g

    def _known(self, src_ip):
        """Issue 13 §2: does `src_ip` get the known gateways' lane?"""
        if src_ip is None or not self.gateways:
            return False
        try:
            return ip_bytes(src_ip) in self.gateways
        except (ValueError, TypeError, AttributeError):
            return False

    def _may_answer(self, now, known):
        # Cheap checks first, the bucket last: garbage never drains it.
        if self.window_ms is not None and now - self.boot_ms > self.window_ms:
            return self._count("refused_window")
        if self.bucket is not None and not self.bucket.allow(now, known):
            return self._count("refused_rate_gateway" if known else "refused_rate")
        if not self.keys.secrets():
            return self._count("refused_no_secret")
        return True

    def answer_ike(self, m, src_ip, now):
        """The §4.5 answer to an IKE message for SPIs nobody here knows, or None.

        `m` is the message as qcd.wire.parse returned it (None: malformed).

        Only for a well-formed, protected request that is not IKE_SA_INIT and
        names no SA this node holds, by either SPI (RFC 6290 §4.5, §9.2; RFC
        7296 §2.21.4).
        """
        if m is None:
            return self._count("refused_malformed")
        if m.flags & wire.FLAG_R:
            return self._count("refused_response")
        if m.exchange == wire.IKE_SA_INIT or m.spi_r == _ZERO8:
            return self._count("refused_sa_init")
        if m.exchange not in _ANSWERABLE:
            return self._count("refused_exchange")
        if not m.is_protected():
            return self._count("refused_unprotected")
        if self.holds(m.spi_i, m.spi_r):  # §9.2, whatever the I flag says
            return self._count("refused_known_sa")
        known = self._known(src_ip)
        if self._may_answer(now, known) is None:
            return None
        out = self._answers(m.spi_i, m.spi_r, src_ip, lambda toks: wire.answer_invalid_ike_spi(m, toks, self.protocol_id), now, known)
        self._count("answered_ike")
        return out

    def answer_esp(self, packet, now, src_ip=None):
        """The §8.2 answer to an ESP packet with an unknown SPI, or None.

        Needs the Child SPI -> IKE SA map the key source keeps; the token is
        regenerated for the parent IKE SA and the taker address stored with
        it, so a §5.2 token matches the one handed over.
        """
        spi = wire.esp_spi(packet)
        if spi is None:
            return self._count("refused_malformed")
        entry = self.keys.child_get(spi)
        if entry is None:
            return self._count("refused_unmapped")
        spi_i, spi_r, initiator, peer_ip = entry
        if self.holds(spi_i, spi_r):  # §9.2
            return self._count("refused_known_sa")
        known = self._known(src_ip)
        if self._may_answer(now, known) is None:
            return None
        out = self._answers(spi_i, spi_r, peer_ip, lambda toks: wire.answer_invalid_spi(bytes(packet[0:4]), spi_i, spi_r, initiator, toks, self.protocol_id), now, known)
        self._count("answered_esp")
        return out

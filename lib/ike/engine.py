# The sans-I/O IKEv2 engine (design principle 1; h11 is the model).
#
#   Engine(config, hook).receive(datagram, src, natt, now)   a datagram arrived
#   Engine.tick(now)                                        timers
#   Engine.initiate(now), liveness(now), rekey_ike(now), ...  local decisions
#   Engine.take_datagrams() -> [(bytes, (ip, port), natt)]  what to send
#   Engine.take_events()    -> [(name, info dict)]          what happened
#   Engine.next_due()       -> ms at which tick() wants to run, or None
#
# It never opens a socket, reads a clock or sleeps; `now` is integer
# milliseconds from a monotonic clock that does not wrap (the shells in
# qcdhost.ikeshell and ike.device keep it). `natt` says the datagram came in, or
# must go out, on the NAT-T port (RFC 3948), where IKE carries a four-octet
# zero non-ESP marker and anything else is ESP; the engine adds and strips
# the marker itself.
#
# Every entry point is a wall (design principle 5): malformed, unexpected,
# replayed or unauthenticated input changes nothing and gets no answer unless
# RFC 7296 says to answer; an exception that still escapes the logic is a bug,
# counted in counters["internal_errors"], never raised to the caller.
# A MemoryError is not a bug but a full heap (a device has about 100 KB): it
# drops the datagram being handled, or postpones what tick() was doing by
# OOM_BACKOFF_MS (an initiation included), counted in
# counters["out_of_memory"] and logged, and the caller's loop goes on.
#
# Per-exchange logic lives in ike.ike_sa_init, ike.ike_auth,
# ike.informational and ike.create_child_sa, reached through one table
# (_EXCHANGES, aioquic's frame-handler table is the model); every state
# change goes through ike.state.
#
# An exchange module has start(eng, sa, kind, arg, now) for a request of
# ours, and for the protected exchanges on_request(eng, sa, m, inner, now)
# and on_response(eng, sa, req, m, inner, now). Those two return what to
# send and what the hook hears: on_request (payloads of our response, hook
# event), on_response the hook event. A hook event is None or a tuple: the
# engine makes the one hook call for that protected message (_tell), adds
# what the hook returns to the response, sends it, and then starts queued
# work. No exchange calls another one: the engine dispatches.

import sys

from ike import crypto, message, payloads, state

# The exchange modules and ike.esp are imported where they are used, on
# first use, not here: a device's heap holds only the code it has needed so
# far (an initiator that has not rekeyed yet has no CREATE_CHILD_SA code
# loaded, one that sees no ESP no ESP code, a device that only initiates
# no responder-only code).
from ike.const import (
    CREATE_CHILD_SA,
    FLAG_I,
    FLAG_R,
    IKE_AUTH,
    IKE_SA_INIT,
    INFORMATIONAL,
    KNOWN_PAYLOADS,
    NONCE_LEN,
    PT_N,
    UNSUPPORTED_CRITICAL_PAYLOAD,
    ESP_SPI_MIN,
    exchange_name,
    notify_name,
    PAYLOAD_NAMES,
)
from ikebase import ikev2
from ike.keymat import BLOCK
from ike.sa import Request

NON_ESP_MARKER = b"\x00\x00\x00\x00"  # RFC 3948 §2.2
# Seconds an old IKE SA that was rekeyed may wait for the Delete its peer
# owes (§2.8) before it is dropped without one.
REKEYED_LINGER_MS = 60000
# After an allocation failed, tick() waits this long before it tries again
# (a MemoryError comes after the collector already ran: retrying at once
# only spins).
OOM_BACKOFF_MS = 1000

# The one table of exchanges: exchange type -> (the module for our
# requests and their responses, the module for the peer's requests), each
# loaded on first use; and the exchange each kind of request of ours runs
# in. IKE_SA_INIT and IKE_AUTH have their responder's side apart, so a
# device that only initiates never loads it.
_EXCHANGES = {
    IKE_SA_INIT: ("ike_sa_init", "ike_sa_init_responder"),
    IKE_AUTH: ("ike_auth", "ike_auth_responder"),
    INFORMATIONAL: ("informational", "informational"),
    CREATE_CHILD_SA: ("create_child_sa", "create_child_sa"),
}
_KINDS = {
    "init": IKE_SA_INIT,
    "auth": IKE_AUTH,
    "liveness": INFORMATIONAL,
    "delete_ike": INFORMATIONAL,
    "delete_child": INFORMATIONAL,
    "notify": INFORMATIONAL,
    "rekey_ike": CREATE_CHILD_SA,
    "rekey_child": CREATE_CHILD_SA,
}


def exchange(ex, theirs=0):
    """The module that runs exchange type `ex` (`theirs`: the peer's
    request), imported on first use (again after _unload dropped it)."""
    name = _EXCHANGES[ex][theirs]
    return __import__("ike." + name, None, None, (name,))


# What a device unloads once no SA needs it (Engine.unload, Engine._unload):
# the modules of IKE_SA_INIT, IKE_AUTH and CREATE_CHILD_SA (both halves
# together: a responder half imports from its initiator half), then the
# helpers only they need, once none of those modules is loaded, nor any
# other module that holds the helper: every module of lib/ike that imports
# it at its top level is an exchange module or named here (test_ike_engine
# checks it against the sources).
# A holder still loaded would keep the helper's code alive, and a later
# import would load a second copy beside it. ike.informational stays (every
# liveness check). D-H goes too, in this order: ike.dh, ike.modp (dh's
# primes), ike.x25519_comb, ike.x25519 (which x25519_comb imports): between
# handshakes and rekeys no SA holds a key pair, and the one made ahead in
# idle time is plain bytes in ike.crypto (crypto.prepare's job holds its own
# references to the code it runs, so unloading mid-job is safe).
_UNLOADED = (IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA)
_HELPERS = (
    ("proposals", ()),
    ("ts", ("tunnel", "config_payload", "config_check")),
    ("dh", ("config_check",)),
    ("modp", ("dh",)),
    ("x25519_comb", ()),
    ("x25519", ("x25519_comb",)),
)


def _forget(name):
    """Unload ike.<name> if it is loaded: its code goes back to the heap
    (its qstrs stay: MicroPython never frees them)."""
    if "ike." + name in sys.modules:
        import ike

        del sys.modules["ike." + name]
        try:
            delattr(ike, name)  # the import made it an attribute of the package
        except (AttributeError, KeyError):
            pass


COUNTER_NAMES = (
    "rx",  # datagrams in
    "tx",  # datagrams out
    "dropped_malformed",  # not an IKE message / ESP packet we could parse
    "dropped_unexpected",  # a message this state or window does not accept
    "dropped_i_flag",  # a known SA's SPIs with the I flag of our own role (§3.1)
    "dropped_msg_id",  # Message ID outside the window (§2.3)
    "dropped_protocol",  # the state table (ike.state) forbids what it asks for
    "dropped_integrity",  # ICV did not verify / could not decrypt
    "dropped_unknown_spi",  # IKE SPIs nobody here holds (hook had no answer)
    "dropped_unprotected",  # unprotected message for a known SA, hook said keep
    "dropped_esp",  # ESP that failed ICV, replay or had an unknown SPI
    "retransmitted",  # our requests sent again
    "answered_retransmit",  # cached response sent for a retransmitted request
    "refused_ike_sa_init",  # IKE_SA_INIT requests to a device that only initiates
    "half_open_dropped",  # half-open IKE SAs dropped for newer ones at a cap
    "hook_answers",  # unprotected answers the hook produced
    "hook_errors",  # the hook raised (treated as its default answer)
    "internal_errors",  # a bug: an exception escaped the engine's logic
    "out_of_memory",  # MemoryError: a datagram dropped or a step postponed
)


class Engine:
    def __init__(self, config, hook=None, rng=None, log=None):
        self.cfg = config
        if hook is None:
            # imported only then: a device passes its hook (qcd.hook) and
            # never holds this class of empty methods
            from ike.hook import NullHook

            hook = NullHook()
        self.hook = hook
        self.rng = rng if rng is not None else crypto.random_bytes
        self._log = log
        self.local_addr = config.local_addr
        self.local_port = config.local_port
        self.local_natt_port = config.local_natt_port
        self.sas = {}  # our SPI (8 octets) -> IkeSa
        self.half_open = {}  # (peer SPIi, peer ip, peer port) -> IkeSa (responder, §2.6)
        self.children = {}  # our inbound ESP SPI (int) -> (ChildSa, IkeSa)
        self._out = []
        self._events = []
        self._start_at = None
        self._oom_until = None  # tick() postponed to this time by a MemoryError
        self._serial = 0
        self.cookie_secret = self.rng(32)
        # The data plane (ike.tunnel.Tunnel sets itself here): inbound ESP
        # goes to it instead of an "esp" event; virtual_ip is the address a
        # gateway assigned in CFG_REPLY (ike.config_payload), 4 bytes.
        self.tunnel = None
        self.virtual_ip = None
        self.counters = {}
        for n in COUNTER_NAMES:
            self.counters[n] = 0
        # Unload the handshake's and the rekey's code once no SA needs it
        # (_unload): on by default on MicroPython, where the code is most of
        # the heap; CPython keeps every module loaded.
        self.unload = sys.implementation.name == "micropython"

    # -- plumbing --------------------------------------------------------------

    def bind(self, addr, port, natt_port):
        """The shell tells the engine where its sockets really are (port 0 in
        the configuration means any free port): NAT detection hashes them."""
        if addr and addr != "0.0.0.0":
            self.local_addr = addr
        self.local_port = port
        self.local_natt_port = natt_port

    def ours(self, natt):
        """Our (address, port): the IKE port, or with `natt` the NAT-T one
        (what NAT detection hashes, RFC 7296 §2.23)."""
        return (self.local_addr, self.local_natt_port if natt else self.local_port)

    def log(self, text):
        if self._log is not None:
            try:
                self._log(text)
            except Exception:
                pass

    def event(self, name, **info):
        self._events.append((name, info))

    def take_datagrams(self):
        out = self._out
        self._out = []
        return out

    def take_events(self):
        out = self._events
        self._events = []
        return out

    def count(self, name):
        self.counters[name] += 1

    def _bug(self, where, e):
        self.counters["internal_errors"] += 1
        try:
            self.log("ike: internal error in %s: %s %s" % (where, type(e).__name__, e))
        except MemoryError:
            pass

    def _oom(self, where, now, what):
        """A MemoryError: count it, log it (if even that fits) and hold tick()
        back for OOM_BACKOFF_MS."""
        self.counters["out_of_memory"] += 1
        self._oom_until = now + OOM_BACKOFF_MS
        try:
            self.log("ike: out of memory in " + where + ": " + what)
        except MemoryError:
            pass

    def emit(self, data, dst, natt):
        if natt:
            data = NON_ESP_MARKER + data
        self._out.append((data, dst, natt))
        self.counters["tx"] += 1

    # -- identifiers -------------------------------------------------------------

    def new_spi(self):
        while True:
            s = self.rng(8)
            if s != bytes(8) and s not in self.sas:
                return s

    def new_child_spi(self):
        while True:
            v = int.from_bytes(self.rng(4), "big")
            if v >= ESP_SPI_MIN and v not in self.children:
                return v

    def nonce(self):
        return self.rng(NONCE_LEN)

    def serial(self):
        self._serial += 1
        return self._serial

    # -- the hook, behind a wall ---------------------------------------------------

    def _hook(self, name, default, *args):
        f = getattr(self.hook, name, None)
        if f is None:
            return default
        try:
            return f(*args)
        except Exception as e:
            self.counters["hook_errors"] += 1
            self.log("ike: hook %s raised %s" % (name, type(e).__name__))
            return default

    def hook_add(self, name, *args):
        """Call hook method `name` for a message we build; the notifies it
        returns ((type, proto, data) tuples) as payloads to add inside SK."""
        got = self._hook(name, [], *args)
        out = []
        try:
            for n in got or ():
                out.append((PT_N, payloads.encode_notify(n[0], n[-1], n[1])))
        except Exception:
            self.counters["hook_errors"] += 1
            return []
        return out

    def _tell(self, sa, ex, ev, now):
        """The hook's one call for a protected message of exchange `ex` on
        `sa`, as its exchange module described it (docs/hook.md): None (no
        call: a Delete of the IKE SA, ike_down covers it), ("protected",
        notifies), ("ike_up", notifies, first Child SA or None) or
        ("ike_rekey", old, new, notifies, we initiated). Returns the
        payloads to add to our response."""
        if ev is None:
            return []
        k = ev[0]
        if k == "protected":
            self._hook("protected", None, sa, ex, ev[1], now)
            return []
        if k == "ike_up":
            return self.hook_add("ike_up", sa, ev[1], [ev[2].spi_in] if ev[2] is not None else [], now)
        add = self.hook_add("ike_rekey", ev[1], ev[2], ev[3], now)
        if ev[4] and add:
            # RFC 6290 §4.3: our token for the new SA goes in an
            # INFORMATIONAL request on it
            self.queue(ev[2], "notify", add)
        return []

    # -- SA tables -----------------------------------------------------------------
    #
    # The hook hears of every IKE SA the engine holds, from the moment it
    # has our SPI (ike_created: IKE_SA_INIT sent or answered, a rekey's new
    # SA, our rekey request in flight) to the moment it is dropped for any
    # reason (ike_down, exactly once): RFC 6290 §9.2 needs that whole span.

    def add_sa(self, sa, announced=False):
        sa.idx = self.serial()
        self.sas[sa.local_spi] = sa
        if not announced:
            self._hook("ike_created", None, sa, sa.created)

    def reserve(self, sa, now):
        """An IKE SA that exists only in a request of ours (the new SA of an
        IKE SA rekey we asked for): the hook holds its SPI until add_sa(sa,
        True) or release()."""
        self._hook("ike_created", None, sa, now)

    def release(self, sa, now):
        self._hook("ike_down", None, sa, now)

    def sa_list(self):
        return list(self.sas.values())

    def established(self, sa, now):
        """IKE_AUTH completed (both roles): the caller learns it; the hook
        with ike_up once the Child SA is decided (_tell)."""
        state.set_ike(sa, "auth_done")
        sa.established = now
        sa.reported = True
        self.event("ike_up", sa=sa.name(), peer=sa.peer, initiator=sa.initiator, id=sa.peer_id[1] if sa.peer_id else None)
        self.log("ike: IKE SA %s established with %s:%d (%s)" % (sa.name(), sa.peer[0], sa.peer[1], "initiator" if sa.initiator else "responder"))

    def install_child(self, sa, child, now, tell_hook=True):
        sa.children.append(child)
        child.replay = None  # made by _esp_in at the first inbound packet
        self.children[child.spi_in] = (child, sa)
        if tell_hook:  # not the first Child SA: ike_up covers it
            self._hook("child_up", None, sa, child.spi_in, now)
        self.event("child_up", sa=sa.name(), child=child.name(), spi_in=child.spi_in, spi_out=child.spi_out, keys=child.keys)
        self.log("ike: Child SA %s up under %s (ESP SPIs in %08x, out %08x)" % (child.name(), sa.name(), child.spi_in, child.spi_out))

    def owner(self, child):
        """The IKE SA that holds `child` now (a rekey moves Child SAs), or
        None when it is gone."""
        hit = self.children.get(child.spi_in)
        return hit[1] if hit is not None and hit[0] is child else None

    def remove_child(self, sa, child, now, reason, tell_hook=True):
        if child in sa.children:
            sa.children.remove(child)
        if self.children.get(child.spi_in, (None,))[0] is child:
            del self.children[child.spi_in]
        state.set_child(child, "closed")
        if tell_hook:  # not when its IKE SA goes: ike_down covers them all
            self._hook("child_down", None, sa, child.spi_in, now)
        self.event("child_down", sa=sa.name(), child=child.name(), reason=reason)
        self.log("ike: Child SA %s deleted (%s)" % (child.name(), reason))

    def move_children(self, old, new, now):
        """An IKE SA rekey moves every Child SA to the new IKE SA (§2.8);
        the hook's ike_rekey covers them (docs/hook.md)."""
        for c in old.children:
            new.children.append(c)
            self.children[c.spi_in] = (c, new)
        old.children = []

    def close(self, sa, reason, now, report=True):
        """The IKE SA is gone: Delete answered or received, retransmissions
        gave up, a verified QCD token, INITIAL_CONTACT, a failed handshake.
        No message is sent here."""
        if self.sas.get(sa.local_spi) is not sa:
            return
        del self.sas[sa.local_spi]
        for k in list(self.half_open):
            if self.half_open[k] is sa:
                del self.half_open[k]
        was_up = sa.reported
        req = sa.request
        if req is not None and req.kind == "rekey_ike":
            self.release(req.ctx[3], now)  # the new SA our rekey asked for
        for c in list(sa.children):
            if was_up and report:
                self.remove_child(sa, c, now, reason, False)
            else:
                if self.children.get(c.spi_in, (None,))[0] is c:
                    del self.children[c.spi_in]
        sa.children = []
        state.set_ike(sa, "closed")
        sa.request = None
        sa.tasks = []
        self._hook("ike_down", None, sa, now)
        if was_up and report:
            self.event("ike_down", sa=sa.name(), reason=reason, peer=sa.peer)
            self.log("ike: IKE SA %s deleted (%s)" % (sa.name(), reason))
        elif not was_up and sa.successor is None:
            self.event("ike_failed", sa=sa.name(), reason=reason, peer=sa.peer)
            self.log("ike: IKE SA %s not established (%s)" % (sa.name(), reason))
        else:
            self.log("ike: old IKE SA %s removed (%s)" % (sa.name(), reason))
        # reinitiate_s: an initiator brings the tunnel back when it was lost
        # (timeout, QCD verdict, the peer's Delete), not when we ended it
        if sa.initiator and self.cfg.initiator and self.cfg.reinitiate_ms is not None and sa.successor is None and reason != "deleted by us":
            if not [s for s in self.sas.values() if s.up() or s.state in (state.INIT_SENT, state.AUTH_SENT)]:
                self._start_at = now + self.cfg.reinitiate_ms

    # -- sending -------------------------------------------------------------------

    def _timeout(self, tries):
        t = self.cfg.rt_timeout_ms * (self.cfg.rt_base ** tries)
        if self.cfg.rt_limit_ms and t > self.cfg.rt_limit_ms:
            t = self.cfg.rt_limit_ms
        return int(t)

    def _summary(self, pls):
        out = []
        for p in pls:
            t = p[0]
            if t == PT_N:
                n = payloads.decode_notify(p[-1])
                out.append("N(%s)" % (notify_name(n[0]) if n else "?"))
            else:
                out.append(PAYLOAD_NAMES.get(t, "P%d" % t))
        return " ".join(out)

    def log_msg(self, direction, exchange, response, msg_id, pls, peer):
        self.log(
            "ike: %s %s %s #%d %s %s:%d [%s]"
            % (
                direction,
                exchange_name(exchange),
                "response" if response else "request",
                msg_id,
                "to" if direction == "out" else "from",
                peer[0],
                peer[1],
                self._summary(pls),
            )
        )

    def protect(self, sa, exchange, flags, msg_id, pls):
        encr, integ = sa.keys.outbound(sa.initiator)
        return message.build_sk(sa.spi_i, sa.spi_r, exchange, flags, msg_id, pls, encr, integ, self.rng(BLOCK))

    def send_request(self, sa, kind, exchange, pls, ctx, now):
        """Start a protected request on `sa` (the window must be free)."""
        msg_id = sa.my_msg_id
        flags = FLAG_I if sa.initiator else 0
        data = self.protect(sa, exchange, flags, msg_id, pls)
        self.log_msg("out", exchange, False, msg_id, pls, sa.peer)
        self.start_request(sa, kind, exchange, msg_id, data, ctx, now)

    def start_request(self, sa, kind, exchange, msg_id, data, ctx, now):
        sa.request = Request(kind, exchange, msg_id, data, ctx, now, now + self._timeout(0))
        self.emit(data, sa.peer, sa.natt)

    def respond(self, sa, m, pls, now):
        """Answer request `m` on `sa` and keep the answer for retransmissions
        of that request (§2.1)."""
        flags = FLAG_R | (FLAG_I if sa.initiator else 0)
        data = self.protect(sa, m.exchange, flags, m.msg_id, pls)
        sa.last_response = (m.msg_id, data, crypto.sha256(m.buf))
        sa.peer_msg_id = m.msg_id + 1
        self.log_msg("out", m.exchange, True, m.msg_id, pls, sa.peer)
        self.emit(data, sa.peer, sa.natt)

    def task(self, sa, kind, arg, now):
        """Queue an exchange and start it if the window is free (§2.3)."""
        self.queue(sa, kind, arg)
        self.next_task(sa, now)

    def queue(self, sa, kind, arg):
        """Queue an exchange only: an exchange module asks for follow-up
        work this way, and the engine starts it once the step is done
        (_after), so no exchange runs inside another."""
        for t in sa.tasks:
            if t[0] == kind and t[1] is arg:
                return
        sa.tasks.append((kind, arg))

    def next_task(self, sa, now):
        while sa.request is None and sa.tasks and self.sas.get(sa.local_spi) is sa:
            # the module first: a MemoryError while it loads (a device
            # loads exchange code again after _unload) leaves the task
            # queued, and tick() starts it after OOM_BACKOFF_MS
            mod = exchange(_KINDS[sa.tasks[0][0]])
            kind, arg = sa.tasks.pop(0)
            mod.start(self, sa, kind, arg, now)

    # -- receiving -----------------------------------------------------------------

    def receive(self, data, src, natt, now):
        """One UDP datagram from `src` ((ip, port)) on the IKE port, or on the
        NAT-T port when `natt`."""
        try:
            self._receive(bytes(data), src, natt, now)
        except state.ProtocolError as e:
            # the state table refused what the peer's message asked for:
            # the message is dropped, not a bug (design principle 5)
            self.counters["dropped_protocol"] += 1
            self.log("ike: dropped: %s not allowed in %s" % e.args)
        except MemoryError:
            self._oom("receive", now, "datagram dropped")
        except Exception as e:
            self._bug("receive", e)

    def _receive(self, data, src, natt, now):
        self.counters["rx"] += 1
        if natt:
            # RFC 3948 §2.2/§2.3: NAT-keepalive, IKE after the marker, or ESP
            kind, data = ikev2.split_4500(data)
            if kind != "ike":
                if kind == "esp":
                    self._esp_in(data, src, now)
                elif kind is None:
                    self.count("dropped_malformed")
                return
        m = message.parse(data)
        if m is None:
            self.count("dropped_malformed")
            return
        if m.exchange == IKE_SA_INIT and not m.is_protected():
            if not m.is_response():
                if m.spi_r == bytes(8) and m.flags & FLAG_I:
                    if not self.cfg.accept_ike_sa_init:
                        # A device that only initiates answers no
                        # IKE_SA_INIT (config accept_ike_sa_init): silence,
                        # no state, no exponentiation, no responder code.
                        self.count("refused_ike_sa_init")
                        return
                    exchange(IKE_SA_INIT, 1).on_request(self, m, src, natt, now)
                    return
            else:
                sa = self.sas.get(m.spi_i)
                if sa is not None and sa.initiator and sa.state == state.INIT_SENT:
                    exchange(IKE_SA_INIT).on_response(self, sa, m, src, natt, now)
                    self._after(now)
                    return
        sa = self._lookup(m)
        if sa is not None and bool(m.flags & FLAG_I) == sa.initiator:
            # The I flag says the sender is the original initiator (§3.1):
            # the peer's messages carry the opposite of our role. Dropped,
            # and never taken for a message for unknown SPIs.
            self.count("dropped_i_flag")
            return
        if sa is None:
            # the parsed message: the hook does not parse it again
            self._answer(self._hook("unknown_ike_spi", None, m, src, now), src, natt, "dropped_unknown_spi")
            return
        if not m.is_protected():
            # docs/hook.md §4: the hook judges; True means the peer rebooted
            # (RFC 6290 §3): delete silently. Never answered (RFC 7296
            # §2.21.4: MUST NOT change state on an unprotected message alone).
            if sa.reported and self._hook("unprotected", False, m, src, sa, now) is True:
                self.close(sa, "peer rebooted (verified QCD token)", now)
            else:
                self.count("dropped_unprotected")
            return
        self._protected(sa, m, src, natt, now)

    def _answer(self, ans, src, natt, dropped):
        """The hook's unprotected answer (docs/hook.md §3, §5): one message,
        or a tuple of them (one per candidate token) sent in order; none
        counts `dropped`."""
        if not ans:
            self.count(dropped)
            return
        for a in ans if isinstance(ans, tuple) else (ans,):
            self.counters["hook_answers"] += 1
            self.emit(bytes(a), src, natt)

    def _lookup(self, m):
        # By the SPI pair, whichever SPI the I flag points at. RFC 6290 §9.2
        # depends on it: a lookup that trusted the (unprotected) I flag would
        # miss a live SA when the flag is flipped and hand the request to the
        # hook as one for unknown SPIs, whose answer (INVALID_IKE_SPI and a
        # valid token) deletes the live SA at the peer.
        for spi in (m.spi_i, m.spi_r):
            sa = self.sas.get(spi)
            if sa is not None and sa.spi_i == m.spi_i and sa.spi_r == m.spi_r:
                return sa
        return None

    def _protected(self, sa, m, src, natt, now):
        if sa.keys is None:
            self.count("dropped_unexpected")
            return
        if m.is_response():
            req = sa.request
            if req is None or m.msg_id != req.msg_id or m.exchange != req.exchange:
                self.count("dropped_msg_id" if req is not None and m.msg_id != req.msg_id else "dropped_unexpected")
                return
            inner = self._open(sa, m, src, natt, now)
            if inner is None:
                return
            sa.request = None
            sa.my_msg_id += 1
            ev = exchange(req.exchange).on_response(self, sa, req, m, inner, now)
            self._tell(sa, req.exchange, ev, now)
            self._after(now)
            return
        # A request. §2.1: a retransmission of the last request we answered
        # gets the same answer again; anything else outside the window is
        # dropped (§2.3).
        if sa.last_response is not None and m.msg_id == sa.last_response[0]:
            if crypto.sha256(m.buf) == sa.last_response[2]:
                self.count("answered_retransmit")
                self.emit(sa.last_response[1], sa.peer, sa.natt)
            else:
                self.count("dropped_msg_id")
            return
        if m.msg_id != sa.peer_msg_id:
            self.count("dropped_msg_id")
            return
        # the state table (ike.state): ProtocolError, counted dropped_protocol
        state.check_peer_request(sa.state, exchange_name(m.exchange))
        inner = self._open(sa, m, src, natt, now)
        if inner is None:
            return
        # §2.5: a critical payload we do not understand rejects the message
        for p in inner:
            if p[1] and p[0] not in KNOWN_PAYLOADS:
                self.respond(sa, m, [(PT_N, payloads.encode_notify(UNSUPPORTED_CRITICAL_PAYLOAD, bytes((p[0],))))], now)
                return
        if payloads.notifies(inner) is None:
            self.respond(sa, m, [(PT_N, payloads.encode_notify(7))], now)  # INVALID_SYNTAX
            return
        reply, ev = exchange(m.exchange, 1).on_request(self, sa, m, inner, now)
        # the hook first (what it returns goes into the response), then the
        # response, then queued work (which may use an SA the response makes)
        self.respond(sa, m, reply + self._tell(sa, m.exchange, ev, now), now)
        self._after(now)

    def _after(self, now):
        """An exchange step is done: unload the code no SA needs any more
        (Engine.unload), then start the work it queued (on any SA), where
        the window is free."""
        if self.unload:
            self._unload()
        for sa in self.sa_list():
            self.next_task(sa, now)

    def _unload(self):
        """Unload the modules of every exchange in _UNLOADED that no SA has
        a request of ours or a queued task in; when none of them is left
        loaded, the helpers none of whose other holders is loaded. The peer's next request, or ours,
        imports them again (exchange()): everything an exchange keeps
        between messages lives in the SAs."""
        busy = []
        for sa in self.sas.values():
            if sa.request is not None:
                busy.append(sa.request.exchange)
            for t in sa.tasks:
                busy.append(_KINDS[t[0]])
        held = False
        for ex in _UNLOADED:
            for name in _EXCHANGES[ex]:
                if ex not in busy:
                    _forget(name)
                elif "ike." + name in sys.modules:
                    held = True
        if held:
            return
        for name, holders in _HELPERS:
            if not [h for h in holders if "ike." + h in sys.modules]:
                _forget(name)

    def _open(self, sa, m, src, natt, now):
        """Verify and decrypt `m` on `sa`: its inner payloads, or None
        (counted dropped_integrity). An authenticated message is proof of
        life (_seen) and is logged."""
        encr, integ = sa.keys.inbound(sa.initiator)
        inner = message.decrypt_sk(m, encr, integ)
        if inner is None:
            self.count("dropped_integrity")
            return None
        self._seen(sa, src, natt, now)
        self.log_msg("in", m.exchange, m.is_response(), m.msg_id, inner, src)
        return inner

    def _seen(self, sa, src, natt, now):
        """An authenticated message: the peer is alive; behind a NAT its
        address may change (§2.23: use the latest authenticated source)."""
        sa.last_recv = now
        if (src[0], src[1]) != (sa.peer[0], sa.peer[1]) and (sa.nat_detected or natt):
            self.log("ike: peer of %s moved to %s:%d" % (sa.name(), src[0], src[1]))
            sa.peer = (src[0], src[1])
            sa.natt = natt

    # -- ESP -----------------------------------------------------------------------

    def _esp_in(self, packet, src, now):
        from ike import esp  # loaded at the first ESP packet, with this path

        esp.engine_in(self, packet, src, now)

    def send_esp(self, now, payload=None, child=None):
        """Send one ESP-in-UDP packet (RFC 4303, RFC 3948) into a Child SA:
        `payload` (an IP packet; default an ICMP echo request from our
        traffic selector to the peer's). Needs UDP encapsulation (a NAT-T
        SA). Returns the packet, or None (ike.esp.engine_send)."""
        from ike import esp

        try:
            return esp.engine_send(self, now, payload, child)
        except Exception as e:
            self._bug("send_esp", e)
            return None

    def emit_esp(self, pkt, sa):
        """An ESP packet built elsewhere (ike.tunnel) goes out to the IKE
        SA's peer on the NAT-T port (RFC 3948: no marker before ESP)."""
        self._out.append((pkt, sa.peer, True))
        self.counters["tx"] += 1

    # -- timers --------------------------------------------------------------------

    def start(self, now):
        """Begin: an initiator schedules its first IKE_SA_INIT after
        start_delay_s (null: only on an explicit initiate()). A device
        (Engine.unload) also unloads what its setup left that no SA needs
        (ike.ts, which the configuration checks imported)."""
        if self.unload:
            self._unload()
        if self.cfg.initiator and self.cfg.start_delay_ms is not None:
            self._start_at = now + self.cfg.start_delay_ms

    def next_due(self):
        due = self._next_due()
        if due is not None and self._oom_until is not None and due < self._oom_until:
            return self._oom_until
        return due

    def _next_due(self):
        due = self._start_at
        cfg = self.cfg
        for sa in self.sas.values():
            cands = []
            if sa.request is not None:
                cands.append(sa.request.due)
            if sa.state == state.INIT_DONE:
                cands.append(sa.created + cfg.half_open_ms)
            if sa.up() and sa.request is None:
                if cfg.dpd_ms:
                    cands.append(sa.last_recv + cfg.dpd_ms)
                if cfg.rekey_ms and sa.state == state.ESTABLISHED:
                    cands.append(sa.established + cfg.rekey_ms)
                if cfg.child_rekey_ms:
                    for c in sa.children:
                        if c.state == state.INSTALLED:
                            cands.append(c.created + cfg.child_rekey_ms)
            if sa.request is None and sa.tasks:
                cands.append(0)  # work an allocation failure kept from starting
            if sa.state == state.REKEYED:
                cands.append(sa.last_recv + REKEYED_LINGER_MS)
            for c in sa.children:
                if c.state == state.REKEYED and c.rekeyed_at is not None:
                    cands.append(c.rekeyed_at + REKEYED_LINGER_MS)
            for c in cands:
                if due is None or c < due:
                    due = c
        return due

    def tick(self, now):
        if self._oom_until is not None:
            if now < self._oom_until:
                return
            self._oom_until = None
        try:
            self._tick(now)
        except MemoryError:
            self._oom("tick", now, "timers postponed")
        except Exception as e:
            self._bug("tick", e)

    def _tick(self, now):
        cfg = self.cfg
        if self._start_at is not None and now >= self._start_at:
            self._start_at = None
            try:
                self._initiate(now)
            except MemoryError:
                # postponed, not given up: the first IKE_SA_INIT must follow
                self._start_at = now + OOM_BACKOFF_MS
                self._oom("initiate", now, "IKE_SA_INIT postponed")
        for sa in self.sa_list():
            if self.sas.get(sa.local_spi) is not sa:
                continue
            req = sa.request
            if req is not None and now >= req.due:
                if req.tries >= cfg.rt_tries:
                    # §2.4: "If there has only been outgoing traffic on all of
                    # the SAs associated with an IKE SA, it is essential to
                    # confirm liveness ... If no cryptographically protected
                    # messages have been received ... the IKE SA MUST be
                    # deleted" -- after the retransmissions gave up.
                    self.log("ike: %s %s #%d: no answer after %d retransmissions, giving up" % (exchange_name(req.exchange), req.kind, req.msg_id, req.tries))
                    self.close(sa, "peer did not answer (%s)" % req.kind, now)
                    continue
                req.tries += 1
                req.due = now + self._timeout(req.tries)
                self.counters["retransmitted"] += 1
                self.log("ike: retransmit %d of %s #%d to %s:%d" % (req.tries, exchange_name(req.exchange), req.msg_id, sa.peer[0], sa.peer[1]))
                self.emit(req.data, sa.peer, sa.natt)
                continue
            if sa.state == state.INIT_DONE and now - sa.created >= cfg.half_open_ms:
                self.close(sa, "half-open IKE SA timed out", now)
                continue
            if sa.state == state.REKEYED and now - sa.last_recv >= REKEYED_LINGER_MS:
                self.close(sa, "rekeyed SA never deleted by the peer", now, report=False)
                continue
            for c in list(sa.children):
                # the peer rekeyed it and owes its Delete (§2.8); do not
                # keep it for ever if that never comes
                if c.state == state.REKEYED and c.rekeyed_at is not None and now - c.rekeyed_at >= REKEYED_LINGER_MS:
                    self.remove_child(sa, c, now, "rekeyed Child SA never deleted by the peer")
            if sa.request is None and sa.tasks:
                # queued work that did not start (its module could not be
                # loaded: out of memory): start it now
                self.next_task(sa, now)
                continue
            if not sa.up() or sa.request is not None or sa.tasks:
                continue
            if cfg.rekey_ms and sa.state == state.ESTABLISHED and now - sa.established >= cfg.rekey_ms:
                self.task(sa, "rekey_ike", None, now)
                continue
            if cfg.child_rekey_ms:
                for c in sa.children:
                    if c.state == state.INSTALLED and now - c.created >= cfg.child_rekey_ms:
                        self.task(sa, "rekey_child", c, now)
                        break
                if sa.request is not None:
                    continue
            if cfg.dpd_ms and now - sa.last_recv >= cfg.dpd_ms:
                self.task(sa, "liveness", None, now)

    # -- local decisions -------------------------------------------------------------

    def _current(self):
        """The IKE SA a command applies to: the newest one that is up."""
        best = None
        for sa in self.sas.values():
            if sa.up() and (best is None or sa.idx > best.idx):
                best = sa
        return best

    def _command(self, name, kind, now, sa=None, arg=None):
        try:
            sa = sa or self._current()
            if sa is None:
                self.log("ike: %s: no IKE SA is up" % name)
                return False
            if kind == "rekey_child" or kind == "delete_child":
                if arg is None:
                    live = [c for c in sa.children if c.state == state.INSTALLED]
                    if not live:
                        self.log("ike: %s: no Child SA" % name)
                        return False
                    arg = live[0]
            self.task(sa, kind, arg, now)
            return True
        except Exception as e:
            self._bug(name, e)
            return False

    def initiate(self, now):
        """Start a new IKE SA (and its Child SA) with the configured peer."""
        try:
            return self._initiate(now)
        except MemoryError:
            self._oom("initiate", now, "not started")
            return False
        except Exception as e:
            self._bug("initiate", e)
            return False

    def _initiate(self, now):
        if not self.cfg.initiator and self.cfg.peer_addr == "0.0.0.0":
            self.log("ike: initiate: no peer address configured")
            return False
        exchange(IKE_SA_INIT).start(self, None, "init", None, now)
        return True

    def liveness(self, now, sa=None):
        """An empty protected INFORMATIONAL request (RFC 7296 §2.4)."""
        return self._command("liveness", "liveness", now, sa)

    def rekey_ike(self, now, sa=None):
        return self._command("rekey_ike", "rekey_ike", now, sa)

    def rekey_child(self, now, child=None, sa=None):
        return self._command("rekey_child", "rekey_child", now, sa, child)

    def delete_child(self, now, child=None, sa=None):
        return self._command("delete_child", "delete_child", now, sa, child)

    def delete_ike(self, now, sa=None):
        return self._command("delete_ike", "delete_ike", now, sa)

    def shutdown(self, now):
        """Send a Delete for every IKE SA that is up (a clean stop)."""
        n = 0
        for sa in self.sa_list():
            if sa.up() or sa.state == state.REKEYED:
                sa.tasks = [t for t in sa.tasks if t[0] == "delete_ike"]
                self.task(sa, "delete_ike", None, now)
                n += 1
        return n

    def status(self):
        out = []
        for sa in self.sas.values():
            out.append(
                {
                    "spi_i": sa.spi_i.hex(),
                    "spi_r": sa.spi_r.hex(),
                    "state": sa.state,
                    "initiator": sa.initiator,
                    "peer": "%s:%d" % (sa.peer[0], sa.peer[1]),
                    "natt": sa.natt,
                    "children": [
                        {"spi_in": "%08x" % c.spi_in, "spi_out": "%08x" % c.spi_out, "state": c.state, "packets_in": c.packets_in, "packets_out": c.packets_out}
                        for c in sa.children
                    ],
                }
            )
        return {"ike_sas": out, "counters": dict(self.counters)}

# The checks behind ike.config.Config: every key of the configuration
# (docs/config.md), its type, range and default, turned into the attributes
# the engine reads (times in integer milliseconds).
#
# Only making a Config needs this module; the Config the engine holds does
# not. A device loads it during its setup and then lets it go
# (ike.config.forget_checks(): firmware/qcdapp.py does, once its engine is
# made), which gives back its code's share of the heap (issue 10 §3: about
# 4 KB as .mpy). The configuration file is checked on the host before it is
# copied to a board too (`qcdboard deploy --config`, `qcd-peer check`).

from ike.config import ConfigError
from ike import ts as tsmod
from ike.const import CURVE25519, ID_FQDN, ID_IPV4_ADDR, ID_RFC822_ADDR, MODP_2048
from ike.dh import SUPPORTED as _GROUPS

ROLES = ("initiator", "responder")
NAT_T = ("auto", "force", "always")

_KNOWN = (
    "role",
    "local",
    "peer",
    "psk",
    "psk_hex",
    "id_local",
    "id_peer",
    "ts_local",
    "ts_peer",
    "dpd_s",
    "rekey_s",
    "child_rekey_s",
    "retransmit",
    "nat_t",
    "dh_groups",
    "start_delay_s",
    "reinitiate_s",
    "cookie_threshold",
    "half_open_timeout_s",
    "half_open_max",
    "half_open_per_source",
    "accept_ike_sa_init",
    "initial_contact",
)


def _ms(v, what, allow_none=True):
    if v is None:
        if allow_none:
            return None
        raise ConfigError("%s is required" % what)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
        raise ConfigError("%s must be a number of seconds >= 0" % what)
    return int(v * 1000)


def _count(v, what, least):
    if not isinstance(v, int) or isinstance(v, bool) or v < least:
        raise ConfigError("%s must be an integer >= %d" % (what, least))
    return v


def _port(v, what):
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 65535:
        raise ConfigError("%s must be a UDP port (0..65535; 0 = any free port)" % what)
    return v


def _endpoint(d, what, need_addr):
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise ConfigError("%s must be an object" % what)
    addr = d.get("addr")
    if addr is None:
        if need_addr:
            raise ConfigError("%s.addr is required" % what)
        addr = "0.0.0.0"
    try:
        tsmod.ipv4(addr)
    except ValueError:
        raise ConfigError("%s.addr must be a dotted IPv4 address" % what)
    return addr, _port(d.get("port", 500), what + ".port"), _port(d.get("natt_port", 4500), what + ".natt_port")


def identity(text):
    """RFC 7296 §3.5 ID for a configured identity: an IPv4 address is
    ID_IPV4_ADDR, text with '@' ID_RFC822_ADDR, anything else ID_FQDN.
    Returns (id_type, data)."""
    try:
        return ID_IPV4_ADDR, tsmod.ipv4(text)
    except ValueError:
        pass
    data = text.encode()
    return (ID_RFC822_ADDR if "@" in text else ID_FQDN), data


def check(cfg, d):
    """Fill the Config `cfg` from the JSON object `d`, or raise
    ConfigError saying which key is wrong and how."""
    if not isinstance(d, dict):
        raise ConfigError("the configuration must be a JSON object")
    role = d.get("role")
    if role not in ROLES:
        raise ConfigError("role must be 'initiator' or 'responder'")
    cfg.role = role
    cfg.initiator = role == "initiator"
    cfg.local_addr, cfg.local_port, cfg.local_natt_port = _endpoint(d.get("local"), "local", False)
    cfg.peer_addr, cfg.peer_port, cfg.peer_natt_port = _endpoint(d.get("peer"), "peer", cfg.initiator)
    if "psk_hex" in d:
        try:
            cfg.psk = bytes.fromhex(d["psk_hex"])
        except (ValueError, TypeError):
            raise ConfigError("psk_hex must be hex")
    elif isinstance(d.get("psk"), str):
        cfg.psk = d["psk"].encode()
    else:
        raise ConfigError("psk (text) or psk_hex is required")
    if len(cfg.psk) < 8:
        raise ConfigError("the pre-shared key must be at least 8 octets")
    for k in ("id_local", "id_peer"):
        if not isinstance(d.get(k), str) or not d[k]:
            raise ConfigError("%s is required (an FQDN, user@FQDN or IPv4 address)" % k)
    cfg.id_local_text = d["id_local"]
    cfg.id_peer_text = d["id_peer"]
    cfg.id_local = identity(d["id_local"])
    cfg.id_peer = identity(d["id_peer"])
    cfg.ts_local = _selectors(d.get("ts_local"), "ts_local")
    cfg.ts_peer = _selectors(d.get("ts_peer"), "ts_peer")
    cfg.dpd_ms = _ms(d.get("dpd_s", 30), "dpd_s")
    cfg.rekey_ms = _ms(d.get("rekey_s", 0), "rekey_s")
    cfg.child_rekey_ms = _ms(d.get("child_rekey_s", 0), "child_rekey_s")
    rt = d.get("retransmit") or {}
    if not isinstance(rt, dict):
        raise ConfigError("retransmit must be an object")
    # strongSwan's defaults (charon.retransmit_timeout 4.0, _base 1.8,
    # _tries 5): a dead peer is given up after 165 s.
    cfg.rt_timeout_ms = _ms(rt.get("timeout_s", 4.0), "retransmit.timeout_s", False)
    base = rt.get("base", 1.8)
    if not isinstance(base, (int, float)) or base < 1:
        raise ConfigError("retransmit.base must be a number >= 1")
    cfg.rt_base = float(base)
    tries = rt.get("tries", 5)
    if not isinstance(tries, int) or not 0 <= tries <= 20:
        raise ConfigError("retransmit.tries must be 0..20")
    cfg.rt_tries = tries
    cfg.rt_limit_ms = _ms(rt.get("limit_s", 0), "retransmit.limit_s") or 0
    nat_t = d.get("nat_t", "auto")
    if nat_t not in NAT_T:
        raise ConfigError("nat_t must be 'auto', 'force' or 'always'")
    cfg.nat_t = nat_t
    # X25519 first, MODP-2048 (RFC 8247: MUST) for peers without it.
    groups = d.get("dh_groups", [CURVE25519, MODP_2048])
    if not isinstance(groups, list) or not groups or [g for g in groups if g not in _GROUPS]:
        raise ConfigError("dh_groups must be a non-empty list of %s" % (list(_GROUPS),))
    cfg.dh_groups = groups
    cfg.start_delay_ms = _ms(d.get("start_delay_s", 0), "start_delay_s")
    cfg.reinitiate_ms = _ms(d.get("reinitiate_s"), "reinitiate_s")
    ct = d.get("cookie_threshold", 10)
    if not isinstance(ct, int) or ct < 0:
        raise ConfigError("cookie_threshold must be an integer >= 0")
    cfg.cookie_threshold = ct
    cfg.half_open_ms = _ms(d.get("half_open_timeout_s", 30), "half_open_timeout_s", False)
    # Hard caps on half-open IKE SAs (responder, IKE_AUTH not yet seen),
    # each holding about 2 KB of heap (`make bench ONLY=halfopen`) and
    # having cost a D-H computation. A
    # COOKIE (§2.6) only proves the source address is reachable, so an
    # address that echoes it could otherwise hold any number. At a cap
    # the oldest half-open SA (of that source, or of all) is dropped
    # first. Per source: strongSwan's charon.block_threshold is 5.
    cfg.half_open_max = _count(d.get("half_open_max", 16), "half_open_max", 1)
    cfg.half_open_per_source = _count(d.get("half_open_per_source", 5), "half_open_per_source", 1)
    # Whether IKE_SA_INIT requests are answered at all. A responder must;
    # a device that only initiates does not by default, so nobody can
    # make it spend exponentiations and heap on half-open SAs.
    acc = d.get("accept_ike_sa_init", not cfg.initiator)
    if not isinstance(acc, bool):
        raise ConfigError("accept_ike_sa_init must be true or false")
    if not acc and not cfg.initiator:
        raise ConfigError("accept_ike_sa_init: a responder must accept IKE_SA_INIT (false only with role initiator)")
    cfg.accept_ike_sa_init = acc
    cfg.initial_contact = bool(d.get("initial_contact", True))
    cfg.extra = {}
    for k in d:
        if k not in _KNOWN:
            cfg.extra[k] = d[k]


def _selectors(v, what):
    if not isinstance(v, list) or not v:
        raise ConfigError("%s must be a non-empty list like [\"10.2.0.0/24\"]" % what)
    out = []
    for t in v:
        try:
            out.append(tsmod.from_text(t))
        except (ValueError, AttributeError, TypeError):
            raise ConfigError("%s: %r is not an IPv4 prefix" % (what, t))
    return out

# ike.ike_sa_init's limits against an attacker who can receive what it is
# sent (issue 13 §2): the hard caps on half-open IKE SAs (global and per
# source, oldest dropped first) and a device that only initiates refusing
# IKE_SA_INIT. The attacker's requests are built here from bytes (struct),
# not by our engine, and it echoes every COOKIE it is given.
import struct

import pytest
from ike_util import DetRng, dev_config, gw_config

from ike import state
from ike.config import Config, ConfigError
from ike.engine import Engine

IKE_SA_INIT = 34
COOKIE = 16390
# Payload types (RFC 7296 §3.2)
SA, KE, NONCE, NOTIFY = 33, 34, 40, 41


def payload(next_type, body):
    return struct.pack(">BBH", next_type, 0, 4 + len(body)) + body


def transform(last, ttype, tid, attr=b""):
    body = struct.pack(">BBH", ttype, 0, tid) + attr
    return struct.pack(">BBH", 0 if last else 3, 0, 4 + len(body)) + body


def sa_body():
    """One IKE proposal: AES-CBC-256, HMAC-SHA2-256 PRF and integrity,
    MODP-2048 (RFC 7296 §3.3, IANA numbers)."""
    trans = (
        transform(False, 1, 12, struct.pack(">HH", 0x800E, 256))  # ENCR_AES_CBC, key length 256
        + transform(False, 2, 5)  # PRF_HMAC_SHA2_256
        + transform(False, 3, 12)  # AUTH_HMAC_SHA2_256_128
        + transform(True, 4, 14)  # D-H group 14
    )
    return struct.pack(">BBHBBBB", 0, 0, 8 + len(trans), 1, 1, 0, 4) + trans


def init_request(spi_i, cookie=None):
    """An IKE_SA_INIT request: [N(COOKIE),] SA, KE (the group element 4),
    Ni. Header: SPIi, zero SPIr, version 2.0, flags I, Message ID 0."""
    chain = []
    if cookie is not None:
        chain.append((NOTIFY, struct.pack(">BBH", 0, 0, COOKIE) + cookie))
    chain.append((SA, sa_body()))
    chain.append((KE, struct.pack(">HH", 14, 0) + (4).to_bytes(256, "big")))
    chain.append((NONCE, spi_i * 4))
    body = b""
    for k, (_t, b) in enumerate(chain):
        nxt = chain[k + 1][0] if k + 1 < len(chain) else 0
        body += payload(nxt, b)
    hdr = spi_i + bytes(8) + struct.pack(">BBBBII", chain[0][0], 0x20, IKE_SA_INIT, 0x08, 0, 28 + len(body))
    return hdr + body


def cookie_in(answer):
    """The COOKIE notify's data if `answer` is HDR, N(COOKIE), else None."""
    if len(answer) < 36 or answer[16] != NOTIFY:
        return None
    n = answer[28:]
    ln = struct.unpack(">H", n[2:4])[0]
    if struct.unpack(">H", n[6:8])[0] != COOKIE:
        return None
    return bytes(n[8:ln])


def attack(eng, spi, src, now=0):
    """One request from `src`, echoing the COOKIE if one comes back.
    Returns the final answer (or None)."""
    eng.receive(init_request(spi), src, False, now)
    out = eng.take_datagrams()
    if not out:
        return None
    c = cookie_in(out[0][0])
    if c is None:
        return out[0][0]
    eng.receive(init_request(spi, c), src, False, now)
    out = eng.take_datagrams()
    return out[0][0] if out else None


def half_open(eng):
    return sorted((sa for sa in eng.sas.values() if sa.state == state.INIT_DONE), key=lambda s: s.idx)


def responder(**kw):
    return Engine(Config(gw_config(**kw)), None, DetRng(7), None)


def spi(n):
    return struct.pack(">Q", 0x1000 + n)


def test_the_hand_built_request_is_accepted_like_an_initiators():
    eng = responder()
    ans = attack(eng, spi(1), ("198.51.100.1", 500))
    assert ans is not None and ans[:8] == spi(1) and ans[8:16] != bytes(8)
    assert len(half_open(eng)) == 1


def test_one_address_echoing_every_cookie_holds_at_most_its_per_source_cap():
    eng = responder()  # defaults: cookie_threshold 10, half_open_per_source 5
    src = ("198.51.100.1", 500)
    for n in range(100):
        assert attack(eng, spi(n), src) is not None
    held = half_open(eng)
    assert len(held) == eng.cfg.half_open_per_source == 5
    # the oldest went first: what is left are the last five requests
    assert [sa.spi_i for sa in held] == [spi(n) for n in range(95, 100)]
    assert eng.counters["half_open_dropped"] == 95
    assert eng.counters["internal_errors"] == 0


def test_a_source_that_changes_its_port_is_still_one_source():
    eng = responder(half_open_per_source=3)
    for n in range(10):
        attack(eng, spi(n), ("198.51.100.1", 1024 + n))
    assert len(half_open(eng)) == 3


def test_many_addresses_hold_at_most_the_global_cap_oldest_dropped_first():
    eng = responder(half_open_max=8, half_open_per_source=2, cookie_threshold=4)
    order = []
    for n in range(40):
        src = ("198.51.100.%d" % (n + 1), 500)
        assert attack(eng, spi(n), src) is not None
        order.append(spi(n))
        assert len(half_open(eng)) <= 8
    assert [sa.spi_i for sa in half_open(eng)] == order[-8:]
    assert eng.counters["half_open_dropped"] == 32


def test_a_dropped_half_open_sa_is_gone_from_every_table():
    eng = responder(half_open_per_source=1)
    src = ("198.51.100.1", 500)
    attack(eng, spi(1), src)
    attack(eng, spi(2), src)
    assert [sa.spi_i for sa in eng.sas.values()] == [spi(2)]
    assert [k[0] for k in eng.half_open] == [spi(2)]
    assert [e[0] for e in eng.take_events()] == ["ike_failed"]


def test_the_cap_leaves_established_sas_alone_and_a_real_initiator_still_gets_in():
    from ike_util import Pair

    p = Pair(gw=gw_config(half_open_max=2, half_open_per_source=2))
    d, g = p.up()
    assert g.state == state.ESTABLISHED
    for n in range(6):
        attack(p.gw, spi(n), ("198.51.100.%d" % (n + 1), 500))
    assert g.local_spi in p.gw.sas and g.state == state.ESTABLISHED
    assert len(half_open(p.gw)) == 2
    p.dev.initiate(p.now)  # a second IKE SA from the real device
    p.pump()
    assert len([s for s in p.gw.sas.values() if s.state == state.ESTABLISHED]) == 2


def test_a_device_that_only_initiates_answers_no_ike_sa_init():
    eng = Engine(Config(dev_config()), None, DetRng(3), None)
    assert attack(eng, spi(1), ("198.51.100.1", 500)) is None
    assert not eng.sas and not eng.half_open
    assert eng.counters["refused_ike_sa_init"] == 1
    assert eng.counters["internal_errors"] == 0


def test_an_initiator_configured_to_accept_answers_ike_sa_init():
    eng = Engine(Config(dev_config(accept_ike_sa_init=True)), None, DetRng(3), None)
    assert attack(eng, spi(1), ("198.51.100.1", 500)) is not None
    assert len(half_open(eng)) == 1


@pytest.mark.parametrize(
    "kw",
    [
        {"half_open_max": 0},
        {"half_open_max": "8"},
        {"half_open_per_source": 0},
        {"half_open_per_source": True},
        {"accept_ike_sa_init": False},  # a responder must accept
        {"accept_ike_sa_init": "yes"},
    ],
)
def test_bad_limit_settings_are_refused(kw):
    with pytest.raises(ConfigError):
        Config(gw_config(**kw))

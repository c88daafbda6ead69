# lib/ike with lib/qcd behind the notify hook, sans-I/O: the device's key
# source (MemoryKeys here; the flash store in the process tests) survives a
# "reboot" (a fresh Engine and QcdHook), everything else is lost.
from ike_util import Pair, dev_config, gw_config

from ike.engine import NON_ESP_MARKER, Engine
from qcd import hook as qhook
from qcd import wire
from qcdhost.keys import MemoryKeys

SECRET = bytes(range(32))


def qcd_pair(style="5.1"):
    from qcd.tokens import STYLE_ADDR, STYLE_SPIS

    keys = MemoryKeys([SECRET])
    st = STYLE_SPIS if style == "5.1" else STYLE_ADDR
    dh = qhook.QcdHook(qhook.MAKER, keys, st, rate=None)
    gh = qhook.QcdHook(qhook.TAKER)
    p = Pair(dev_config(nat_t="force"), gw_config(), dh, gh)
    p.keys = keys
    p.style = st
    return p, dh, gh


def reboot(p):
    """Power cut: RAM (the engine, the hook) gone; the key source stays."""
    dh = qhook.QcdHook(qhook.MAKER, p.keys, p.style, rate=None)
    p.dev = Engine(p.dev.cfg, dh, p.dev.rng, None)
    return dh


def test_the_child_spi_map_follows_the_sas():
    p, dh, gh = qcd_pair()
    d, g = p.up()
    c = d.children[0]
    assert p.keys.child_get(c.spi_in)[0:2] == d.spis()
    p.gw.rekey_ike(p.now)
    p.pump()
    d2 = p.sa("dev")
    assert p.keys.child_get(c.spi_in)[0:2] == d2.spis()  # moved to the new IKE SA
    p.dev.rekey_child(p.now)
    p.pump()
    c2 = p.sa("dev").children[0]
    assert p.keys.child_count() == 1 and p.keys.child_get(c2.spi_in) is not None and p.keys.child_get(c.spi_in) is None
    p.dev.delete_child(p.now)
    p.pump()
    assert p.keys.child_count() == 0


def test_liveness_after_a_reboot_ends_the_stale_sa_in_one_round_trip():
    p, dh, gh = qcd_pair()
    p.up()
    reboot(p)
    n = len(p.wire)
    p.gw.liveness(p.now)
    p.pump()
    assert not p.gw.sas and gh.taker.counters["verified"] == 1
    assert [w[0] for w in p.wire[n:]] == ["gw", "dev"]  # one request, one answer


def test_each_unprotected_datagram_is_parsed_once_by_engine_and_hook_together(monkeypatch):
    # issue 9: the engine parses a datagram once (ikebase.ikev2.parse) and
    # hands the parsed message to the hook, which does not parse it again.
    # Every parser in lib/ goes through ikev2.header once per message.
    from ikebase import ikev2

    p, dh, gh = qcd_pair()
    p.up()
    reboot(p)
    parses = []
    real = ikev2.header
    monkeypatch.setattr(ikev2, "header", lambda buf: parses.append(1) or real(buf))
    p.gw.liveness(p.now)
    req = p.gw.take_datagrams()[0]
    p.dev.receive(req[0], (p.addr["gw"], 4500), True, p.now)  # for unknown SPIs: the maker answers
    assert len(parses) == 1
    ans = p.dev.take_datagrams()[0]
    del parses[:]
    p.gw.receive(ans[0], (p.addr["dev"], 4500), True, p.now)  # for a known SA: the taker judges
    assert len(parses) == 1
    assert not p.gw.sas and gh.taker.counters["verified"] == 1


def test_esp_after_a_reboot_gets_invalid_spi_and_qcd_at_once():
    # RFC 6290 §8.2: the gateway's first ESP packet into the dead Child SA
    # is answered from the persisted Child SPI map.
    p, dh, gh = qcd_pair()
    d, g = p.up()
    spi_out = g.children[0].spi_out
    reboot(p)
    n = len(p.wire)
    pkt = p.gw.send_esp(p.now)
    assert int.from_bytes(pkt[0:4], "big") == spi_out
    p.pump()
    ans = p.wire[n + 1]
    assert ans[0] == "dev" and ans[1][:4] == NON_ESP_MARKER
    m = wire.parse(ans[1][4:])
    assert [x[0] for x in m.notifies()] == [wire.INVALID_SPI, wire.QUICK_CRASH_DETECTION]
    assert (m.spi_i, m.spi_r) == g.spis()
    assert not p.gw.sas and gh.taker.counters["verified"] == 1
    # and the device builds a new SA
    assert p.up()[1] is not None


def test_address_bound_tokens_work_through_the_engine():
    p, dh, gh = qcd_pair("5.2")
    p.up()
    reboot(p)
    p.gw.liveness(p.now)
    p.pump()
    assert not p.gw.sas and gh.taker.counters["verified"] == 1


def test_the_token_follows_rekeys_from_both_sides():
    p, dh, gh = qcd_pair()
    d, g = p.up()
    for who in ("dev", "gw", "dev"):
        p.engine(who).rekey_ike(p.now)
        p.pump()
        new = p.sa("gw")
        assert gh.taker.has(new.spi_i, new.spi_r) and len(gh.taker) == 1
    reboot(p)
    p.gw.liveness(p.now)
    p.pump()
    assert not p.gw.sas


def test_a_live_sa_is_never_answered_unprotected():
    # RFC 6290 §9.2: a stray request for an SA the device holds is its own
    # business, never a QCD answer.
    p, dh, gh = qcd_pair()
    d, g = p.up()
    p.gw.liveness(p.now)
    p.pump()
    assert dh.maker.counters["answered_ike"] == 0 and p.gw.sas

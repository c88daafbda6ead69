# Interop with strongSwan 5.9.8 (charon + kernel-libipsec), the gateway
# people run. Our engine (qcd-peer, QCD maker) is initiator or
# responder; charon runs in private namespaces (host_tests/strongswan.py),
# both sides on the standard ports 500/4500 of their own veth addresses.
# charon always fakes a NAT with kernel-libipsec, so IKE_AUTH and everything
# after it runs on 4500 with the non-ESP marker, and ESP is UDP-encapsulated.
import time

import pytest
from qcdhost import strongswan
from peers import Peer
from support import missing

PSK = "a-long-pre-shared-key"
CONN = "dev"


@pytest.fixture(scope="module")
def charon_ok():
    why = strongswan.missing_reason()
    if why:
        missing(*why)


def our_cfg(role, tmp, **kw):
    d = {
        "role": role,
        "local": {"addr": strongswan.PEER_ADDR, "port": 500, "natt_port": 4500},
        "peer": {"addr": strongswan.CHARON_ADDR, "port": 500, "natt_port": 4500},
        "psk": PSK,
        "id_local": "dev.example",
        "id_peer": "gw.example",
        "ts_local": ["10.2.0.0/24"],
        "ts_peer": ["10.1.0.0/16"],
        "dpd_s": 0,
        "qcd": {"role": "maker", "image": str(tmp / "qcd.img"), "rate": 100, "burst": 100},
    }
    d.update(kw)
    return d


class Setup:
    def __init__(self, charon, peer, role):
        self.charon = charon
        self.peer = peer
        self.role = role

    def sa(self):
        """charon's view of our IKE SA (the only one), or None."""
        sas = [v for k, v in self.charon.sas(CONN)]
        sas = [s for s in sas if s["state"] == b"ESTABLISHED"]
        return sas[0] if len(sas) == 1 else None

    def wait_charon(self, pred, timeout=60.0, what="condition"):
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            last = self.charon.sas(CONN)
            if pred([v for k, v in last]):
                return last
            time.sleep(0.1)
        raise AssertionError("charon: timed out waiting for %s: %s\n%s" % (what, last, self.charon.log()[-4000:]))

    def spis(self):
        s = self.sa()
        return s["initiator-spi"].decode(), s["responder-spi"].decode()

    def children(self):
        s = self.sa()
        return [c for c in s["child-sas"].values() if c["state"] == b"INSTALLED"] if s else []


def matching(setup):
    """Our status and charon's agree on the IKE SA and its one Child SA."""
    st = setup.peer.status()
    ours = [s for s in st["ike_sas"] if s["state"] == "ESTABLISHED"]
    kids = setup.children()
    if len(ours) != 1 or len(ours[0]["children"]) != 1 or len(kids) != 1:
        return False
    s = setup.sa()
    if (ours[0]["spi_i"], ours[0]["spi_r"]) != (s["initiator-spi"].decode(), s["responder-spi"].decode()):
        return False
    c = ours[0]["children"][0]
    return (c["spi_in"], c["spi_out"]) == (kids[0]["spi-out"].decode(), kids[0]["spi-in"].decode())


def wait_match(setup, what):
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            if matching(setup):
                return
        except (OSError, KeyError, TypeError):
            pass
        time.sleep(0.1)
    raise AssertionError("no matching SAs (%s)\nours: %s\ncharon: %s\n%s\n%s" % (what, setup.peer.status(), setup.charon.sas(CONN), setup.peer.log()[-3000:], setup.charon.log()[-4000:]))


def start(tmp, role, dpd_delay=0, charon_opts=None, conn_extra=None, child_extra=None, **ours):
    c = strongswan.Charon(str(tmp), **(charon_opts or {})).start()
    c.load(CONN, "gw.example", "dev.example", PSK, "10.1.0.0/16", "10.2.0.0/24", dpd_delay=dpd_delay, extra=conn_extra, child_extra=child_extra)
    peer = Peer(str(tmp), "ours", our_cfg(role, tmp, **ours), prefix=c.netns())
    peer.start()
    s = Setup(c, peer, role)
    if role == "responder":
        for _ in c.session().initiate({"child": "net", "ike": CONN, "timeout": 30000}):
            pass
    return s


@pytest.fixture(params=["initiator", "responder"])
def setup(request, tmp_path, charon_ok):
    s = start(tmp_path, request.param)
    wait_match(s, "up")
    yield s
    s.peer.kill()
    s.charon.stop()


# -- establishing ------------------------------------------------------------------


def test_sa_up_with_psk_and_our_qcd_notify_accepted(setup):
    log = setup.charon.log()
    # charon parsed our N(QUICK_CRASH_DETECTION) in IKE_AUTH ("CRASH_DET")
    # and went on: status notifies it does not act on are ignored.
    want = "parsed IKE_AUTH request 1 [" if setup.role == "initiator" else "parsed IKE_AUTH response 1 ["
    line = [x for x in log.splitlines() if want in x][0]
    assert "N(CRASH_DET)" in line
    assert "authentication of 'dev.example' with pre-shared key successful" in log
    s = setup.sa()
    assert s["encr-alg"] == b"AES_CBC" and s["dh-group"] == b"CURVE_25519" and s["prf-alg"] == b"PRF_HMAC_SHA2_256"
    assert s["nat-fake"] == b"yes" and s["remote-port"] == b"4500"  # NAT-T with the marker
    assert setup.children()[0]["encap"] == b"yes"


def test_liveness_checks_both_ways(tmp_path, charon_ok):
    for role in ("initiator", "responder"):
        d = tmp_path / role
        d.mkdir()
        s = start(d, role, dpd_delay=1)
        try:
            wait_match(s, "up")
            assert s.peer.ctl("liveness")["ok"]
            s.peer.wait_log("liveness check of")
            # charon's DPD (dpd_delay 1 s): it sends, we answer, it stays up
            log = s.peer.wait_log("in INFORMATIONAL request")
            assert "out INFORMATIONAL response" in log
            end = time.monotonic() + 30
            while "sending DPD request" not in s.charon.log() and time.monotonic() < end:
                time.sleep(0.1)
            assert "sending DPD request" in s.charon.log()
            assert s.sa() is not None
        finally:
            s.peer.kill()
            s.charon.stop()


def test_rekeys_by_either_side(setup):
    v = setup.charon.session()
    before = setup.spis()
    child = setup.children()[0]["spi-in"]
    assert setup.peer.ctl("rekey-child")["ok"]
    setup.wait_charon(lambda sas: sas and [c for c in sas[0]["child-sas"].values() if c["state"] == b"INSTALLED" and c["spi-in"] != child], what="our Child SA rekey")
    wait_match(setup, "after our Child SA rekey")
    assert setup.peer.ctl("rekey-ike")["ok"]
    setup.wait_charon(lambda sas: len(sas) == 1 and (sas[0]["initiator-spi"].decode(), sas[0]["responder-spi"].decode()) != before, what="our IKE SA rekey")
    wait_match(setup, "after our IKE SA rekey")
    mid = setup.spis()
    child = setup.children()[0]["spi-in"]
    list(v.rekey({"child": "net"}))
    setup.wait_charon(lambda sas: sas and [c for c in sas[0]["child-sas"].values() if c["state"] == b"INSTALLED" and c["spi-in"] != child], what="charon's Child SA rekey")
    wait_match(setup, "after charon's Child SA rekey")
    list(v.rekey({"ike": CONN}))
    setup.wait_charon(lambda sas: len(sas) == 1 and (sas[0]["initiator-spi"].decode(), sas[0]["responder-spi"].decode()) != mid, what="charon's IKE SA rekey")
    wait_match(setup, "after charon's IKE SA rekey")
    log = setup.peer.log()
    assert log.count("rekeyed to") == 2 and "(by us)" in log and "(by peer)" in log
    # RFC 6290 §4.3 with strongSwan: our token went out after both rekeys
    assert "token handed over (rekey_initiated)" in log and "token handed over (rekey_response)" in log
    assert setup.peer.status()["counters"]["internal_errors"] == 0


def test_deletes_by_either_side(setup):
    v = setup.charon.session()
    assert setup.peer.ctl("delete-child")["ok"]
    setup.wait_charon(lambda sas: sas and not [c for c in sas[0]["child-sas"].values()], what="Child SA deleted by us")
    assert "received DELETE for ESP CHILD_SA" in setup.charon.log()
    assert setup.peer.ctl("delete-ike")["ok"]
    setup.wait_charon(lambda sas: not sas, what="IKE SA deleted by us")
    setup.peer.wait(lambda st: not st["ike_sas"], what="our SA gone")
    # and charon deleting: a new SA first
    if setup.role == "initiator":
        assert setup.peer.ctl("initiate")["ok"]
    else:
        for _ in v.initiate({"child": "net", "ike": CONN, "timeout": 30000}):
            pass
    wait_match(setup, "up again")
    list(v.terminate({"child": "net", "timeout": 30000}))
    setup.peer.wait(lambda st: st["ike_sas"] and not st["ike_sas"][0]["children"], what="Child SA deleted by charon")
    list(v.terminate({"ike": CONN, "timeout": 30000}))
    setup.peer.wait(lambda st: not st["ike_sas"], what="IKE SA deleted by charon")
    assert "deleted by peer" in setup.peer.log()


def test_esp_round_trip_through_strongswan(setup):
    # Our ESP-in-UDP (an ICMP echo 10.2.0.1 -> 10.1.0.1 with the Child SA
    # keys) is opened by charon's libipsec; the kernel in charon's namespace
    # answers; charon encrypts the reply and we open it.
    assert setup.peer.ctl("esp")["ok"]
    setup.wait_charon(lambda sas: sas and [c for c in sas[0]["child-sas"].values() if c["packets-in"] == b"1" and c["packets-out"] == b"1"], what="ESP in and out at charon")
    log = setup.peer.wait_log("ESP in on")
    st = setup.peer.status()
    c = st["ike_sas"][0]["children"][0]
    assert c["packets_in"] == 1 and c["packets_out"] == 1
    assert st["counters"]["dropped_esp"] == 0


def test_after_our_reboot_strongswan_gets_invalid_ike_spi_and_qcd_and_stays_healthy(tmp_path, charon_ok):
    for role in ("initiator", "responder"):
        d = tmp_path / role
        d.mkdir()
        # charon gives up on a silent peer quickly here (1 retransmission
        # after 1 s) and then restarts the connection (dpd_action=restart),
        # so a responder on our side sees strongSwan come back by itself
        s = start(d, role, dpd_delay=1, charon_opts={"rt_timeout": 1.0, "rt_tries": 1}, child_extra={"dpd_action": "restart"})
        try:
            wait_match(s, "up")
            stale = s.spis()
            s.peer.kill()  # power cut
            s.peer.start(start_delay_s=None)  # back, same ports and secret, no SA
            log = s.peer.wait_log("answered INVALID_IKE_SPI + QCD")
            assert stale[0] in log.split("answered INVALID_IKE_SPI + QCD")[1].splitlines()[0]
            # charon received our unprotected answer to its DPD and refused
            # it, as RFC 7296 §2.21.4 allows: it neither crashed nor dropped
            # the SA on it ("received unencrypted informational ... payload
            # type NOTIFY was not encrypted ... processing failed")
            want = "received unencrypted informational: from %s[4500]" % strongswan.PEER_ADDR
            end = time.monotonic() + 30
            while want not in s.charon.log() and time.monotonic() < end:
                time.sleep(0.1)
            clog = s.charon.log()
            assert want in clog, clog[-3000:]
            assert "INFORMATIONAL response with message ID" in clog.split(want)[1]
            assert s.charon.alive()
            # healthy: a new SA comes up (we initiate, INITIAL_CONTACT
            # replaces the stale one; or charon gives the stale one up on
            # its own schedule, since it has no QCD, and restarts it)
            if role == "initiator":
                assert s.peer.ctl("initiate")["ok"]
            wait_match(s, "new SA")
            assert s.spis() != stale
        finally:
            s.peer.kill()
            s.charon.stop()


@pytest.mark.parametrize("role", ["initiator", "responder"])
def test_x25519_with_strongswan_in_both_roles(tmp_path, charon_ok, role):
    # charon takes only Curve25519 (its curve25519 plugin); we propose it
    # first, so no INVALID_KE_PAYLOAD round either way.
    s = start(tmp_path, role, conn_extra={"proposals": ["aes256-sha256-curve25519"]})
    try:
        wait_match(s, "up")
        assert s.sa()["dh-group"] == b"CURVE_25519"
        assert "INVAL_KE" not in s.charon.log()
    finally:
        s.peer.kill()
        s.charon.stop()


@pytest.mark.parametrize("role", ["initiator", "responder"])
def test_strongswan_with_modp2048_only_still_works_in_both_roles(tmp_path, charon_ok, role):
    # A gateway without group 31: as initiator we lead with 31, get
    # INVALID_KE_PAYLOAD and retry with 14; as responder we take its 14.
    s = start(tmp_path, role, conn_extra={"proposals": ["aes256-sha256-modp2048"]})
    try:
        wait_match(s, "up")
        log = s.charon.log()
        assert s.sa()["dh-group"] == b"MODP_2048"
        if role == "initiator":
            assert "generating IKE_SA_INIT response 0 [ N(INVAL_KE) ]" in log
            assert "responder wants D-H group 14" in s.peer.log()
        else:
            assert "INVAL_KE" not in log
    finally:
        s.peer.kill()
        s.charon.stop()


def test_invalid_ke_payload_from_strongswan(tmp_path, charon_ok):
    # We lead with MODP-3072; charon takes 31 or 14, not 15, and answers
    # INVALID_KE_PAYLOAD naming one we offered (14); we retry with it.
    s = start(tmp_path, "initiator", dh_groups=[15, 14])
    try:
        wait_match(s, "up")
        assert "generating IKE_SA_INIT response 0 [ N(INVAL_KE) ]" in s.charon.log()
        assert "responder wants D-H group 14" in s.peer.log()
    finally:
        s.peer.kill()
        s.charon.stop()


def test_our_cookie_is_honoured_by_strongswan(tmp_path, charon_ok):
    s = start(tmp_path, "responder", cookie_threshold=0)
    try:
        wait_match(s, "up")
        assert "received COOKIE" in s.charon.log() or "N(COOKIE)" in s.charon.log()
        assert "in IKE_SA_INIT request #0" in s.peer.log() and s.peer.log().count("in IKE_SA_INIT request #0") == 2
    finally:
        s.peer.kill()
        s.charon.stop()

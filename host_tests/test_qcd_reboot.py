# Reboots on real (emulated) flash: the device is a qcd-peer whose key source
# is qcd.store on the flash emulator (qcdhost.emu.flash) over an image file, as the ESP32's `qcd`
# partition would be. It is killed (SIGKILL: a power cut between writes, or a
# power cut torn into a flash write by the emulator) and started again on
# the same image; the gateway (our engine, QCD taker) must then lose the
# stale SA in one round trip, by its liveness check or by its next ESP
# packet (RFC 6290 §8.2: the Child SPI map survived in flash).
import pytest
from peers import QUICK_RETRANSMIT, Peer, device_config, gateway_config, one_up


def gw_cfg():
    return gateway_config(retransmit=QUICK_RETRANSMIT)


def dev_cfg(gw_ports, image, seed=0):
    return device_config(gw_ports, qcd={"role": "maker", "image": image, "image_blocks": 8, "image_encrypted": True, "cut_seed": seed, "rate": 100, "burst": 100})


@pytest.fixture
def pair(tmp_path):
    gw = Peer(str(tmp_path), "gw", gw_cfg()).start()
    dev = Peer(str(tmp_path), "dev", dev_cfg(gw.ports(), str(tmp_path / "qcd.img"))).start()
    gw.wait(one_up, what="up")
    dev.wait(one_up, what="up")
    p = dev.ports()
    dev.config["local"] = {"addr": "127.0.0.1", "port": p[0], "natt_port": p[1]}
    yield gw, dev
    dev.kill()
    gw.kill()


def the_sa(peer):
    sas = peer.up_sas()
    assert len(sas) == 1, sas
    return sas[0]


def reboot(dev):
    dev.kill()
    dev.start(start_delay_s=None)


def test_the_secret_and_the_map_survive_a_reboot(pair):
    gw, dev = pair
    before = dev.status()["hook"]
    child = the_sa(dev)["children"][0]["spi_in"]
    reboot(dev)
    after = dev.status()["hook"]
    assert after["secrets"] == before["secrets"] and len(after["secrets"]) == 1
    assert after["child_map"] == 1
    assert "flash: " in dev.log() and child  # the map entry is the one for `child`


def test_liveness_after_a_reboot_on_flash(pair):
    gw, dev = pair
    reboot(dev)
    assert gw.ctl("liveness")["ok"]
    gw.wait(lambda s: not s["ike_sas"], what="stale SA deleted")
    assert gw.status()["hook"]["taker"]["verified"] == 1
    assert dev.ctl("initiate")["ok"]
    gw.wait(one_up, what="new SA")


def test_the_gateways_next_esp_packet_gets_invalid_spi_and_qcd(pair):
    # RFC 6290 §8.2 with a real ESP-in-UDP packet (the gateway's Child SA
    # keys): the rebooted device finds the SPI in its flash map and answers
    # at once, no liveness check needed.
    gw, dev = pair
    sa = the_sa(gw)
    reboot(dev)
    mark = len(gw.log())
    r = gw.ctl("esp")
    assert r["ok"] and r["packet"][:8] == sa["children"][0]["spi_out"]
    gw.wait(lambda s: not s["ike_sas"], what="stale SA deleted")
    log = gw.log()[mark:]
    assert "verified token" in log and "out INFORMATIONAL" not in log  # no liveness check was needed
    assert "answered INVALID_SPI + QCD" in dev.log()
    assert dev.status()["hook"]["maker"]["answered_esp"] == 1


def test_after_a_child_sa_rekey_the_map_points_at_the_new_spi(pair):
    gw, dev = pair
    old = the_sa(gw)["children"][0]["spi_out"]
    assert gw.ctl("rekey-child")["ok"]
    gw.wait(lambda s: one_up(s) and s["ike_sas"][0]["children"][0]["spi_out"] != old, what="Child SA rekeyed")
    reboot(dev)
    r = gw.ctl("esp")
    assert r["ok"] and r["packet"][:8] != old
    gw.wait(lambda s: not s["ike_sas"], what="stale SA deleted")
    assert dev.status()["hook"]["child_map"] == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_power_cut_torn_into_a_flash_write_loses_nothing_committed(tmp_path, seed):
    # The device dies inside the flash write of a Child SA rekey (the
    # emulator tears that program operation: nothing, a prefix, or some of
    # its bits). On the same image it comes back with its secret; the
    # gateway's retransmitted rekey request reaches a device that holds no
    # SA and gets INVALID_IKE_SPI + QCD: the stale SA goes.
    gw = Peer(str(tmp_path), "gw", gw_cfg()).start()
    dev = Peer(str(tmp_path), "dev", dev_cfg(gw.ports(), str(tmp_path / "qcd.img"), seed)).start()
    try:
        gw.wait(one_up, what="up")
        secrets = dev.status()["hook"]["secrets"]
        p = dev.ports()
        dev.config["local"] = {"addr": "127.0.0.1", "port": p[0], "natt_port": p[1]}
        assert dev.ctl("flash-cut 1")["ok"]
        assert gw.ctl("rekey-child")["ok"]
        dev.proc.wait(60)
        assert dev.proc.returncode == 137 and "POWER CUT" in dev.log()
        dev.start(start_delay_s=None)
        st = dev.status()["hook"]
        assert st["secrets"] == secrets  # the committed secret is intact
        gw.wait(lambda s: not s["ike_sas"], what="stale SA deleted by the retransmitted request's answer")
        assert gw.status()["hook"]["taker"]["verified"] == 1
        assert "answered INVALID_IKE_SPI + QCD" in dev.log()
        assert dev.ctl("initiate")["ok"]
        gw.wait(one_up, what="new SA")
    finally:
        dev.kill()
        gw.kill()

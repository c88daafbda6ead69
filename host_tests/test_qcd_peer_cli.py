# qcd-peer's command line: `check` of host and device configurations
# (errors name the file), `ctl` answers that say why a command cannot run,
# `ctl --wait`, and qcdboard deploy refusing a broken --config before it
# copies anything.
import json
import subprocess
import sys

import pytest
from peers import EXAMPLE, QCD_PEER, Peer, gateway_config, one_up
from support import QCDBOARD


def qcd_peer(*args, timeout=60):
    return subprocess.run([sys.executable, QCD_PEER] + list(args), capture_output=True, text=True, timeout=timeout)


def write(tmp_path, name, cfg):
    p = tmp_path / name
    p.write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
    return str(p)


def example(**changes):
    with open(EXAMPLE) as f:
        cfg = json.load(f)
    cfg.update(changes)
    return cfg


def test_check_accepts_the_example_device_configuration():
    r = qcd_peer("check", EXAMPLE)
    assert r.returncode == 0, r.stderr
    assert "device configuration" in r.stdout and "partition 'qcd'" in r.stdout


@pytest.mark.parametrize(
    "cfg, says",
    [
        ("{not json", "not valid JSON"),
        (example(qcd={"role": "maker", "style": "5.3"}), 'qcd.style must be "5.1" or "5.2"'),
        (example(qcd={"role": "none"}), "qcd.role must be maker, taker or both on a device"),
        (example(device=[]), "'device' must be an object"),
        (example(dpd_s=-1), "dpd_s"),
        (gateway_config(qcd={"role": "maker"}), "a QCD maker needs qcd.image"),
        (gateway_config(qcd={"role": "sometimes"}), "qcd.role must be"),
    ],
)
def test_check_errors_name_the_file(tmp_path, cfg, says):
    path = write(tmp_path, "c.json", cfg)
    r = qcd_peer("check", path)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("qcd-peer: %s: " % path) and says in r.stderr, r.stderr


def test_run_names_the_file_and_says_a_device_configuration_needs_an_image_here():
    r = qcd_peer("run", EXAMPLE, "--max-s", "1")
    assert r.returncode == 2
    assert EXAMPLE in r.stderr and "qcd.image" in r.stderr and "device configuration" in r.stderr


def test_deploy_refuses_a_broken_config_before_copying(tmp_path):
    path = write(tmp_path, "c.json", example(qcd={"role": "maker", "style": "5.3"}))
    # A port nobody listens on: had deploy gone as far as mpremote, it would
    # fail with status 1 and mpremote's own message.
    r = subprocess.run([sys.executable, QCDBOARD, "deploy", "--port", str(tmp_path / "tty"), "--app", "--config", path],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "%s: qcd.style must be" % path in r.stderr and "nothing deployed" in r.stderr


def test_ctl_says_why_a_command_cannot_run_and_wait_runs_it_once_it_can(tmp_path):
    gw = Peer(str(tmp_path), "gw", gateway_config()).start()
    dev_cfg = {
        "role": "initiator",
        "local": {"addr": "127.0.0.1", "port": 0, "natt_port": 0},
        "peer": {"addr": "127.0.0.1", "port": gw.ports()[0], "natt_port": gw.ports()[1]},
        "psk": gw.config["psk"],
        "id_local": "dev.example",
        "id_peer": "gw.example",
        "ts_local": ["10.2.0.0/24"],
        "ts_peer": ["10.1.0.0/16"],
        "start_delay_s": 3,
        "qcd": {"role": "maker", "secret_file": str(tmp_path / "secret.bin")},
    }
    dev = Peer(str(tmp_path), "dev", dev_cfg).start()
    try:
        r = qcd_peer("ctl", dev.ctl_path, "liveness")
        reply = json.loads(r.stdout)
        assert r.returncode == 1 and reply["ok"] is False and reply["retry"] is True
        assert "this initiator starts one in" in reply["error"] and "start_delay_s" in reply["error"]
        r = qcd_peer("ctl", gw.ctl_path, "rekey-child")
        reply = json.loads(r.stdout)
        assert r.returncode == 1 and "this responder waits for its peer" in reply["error"]
        # --wait: the same command, asked again until the IKE SA is up.
        r = qcd_peer("ctl", dev.ctl_path, "liveness", "--wait", "30")
        assert r.returncode == 0 and json.loads(r.stdout) == {"ok": True}, r.stdout
        st = gw.wait(one_up, what="IKE SA up")
        assert st["ike_sas_up"] == 1 and st["hook"]["tokens_held"] == 1
        # Refused commands are said in the answer, not logged once per retry.
        assert "no IKE SA is up" not in dev.log()
    finally:
        dev.kill()
        gw.kill()


def test_ctl_without_a_peer_says_what_to_start(tmp_path):
    sock = str(tmp_path / "nobody.ctl")
    r = qcd_peer("ctl", sock, "status", "--timeout", "1")
    assert r.returncode == 2 and "no answer from %s" % sock in r.stderr and "--wait" in r.stderr
    r = qcd_peer("ctl", sock, "status", "--wait", "0.5", "--timeout", "1")
    assert r.returncode == 2 and "after waiting 0.5 s" in r.stderr

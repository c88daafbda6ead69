# The virtual board as stock ESP32 firmware (vboard --stock): only the
# frozen modules that firmware has (asyncio, mip, ...; not the WebAssembly
# port's extra micropython-lib ones such as hmac or unittest). What `make
# deploy` (qcdboard deploy) or mip leaves on such a board must import and
# run: the package needs nothing that stock firmware lacks (issue 10 §1).
import json
import os

import peers
from peers import QUICK_RETRANSMIT, Peer, gateway_config, one_up
from support import ROOT
from vboard_util import VBoard

PROBE = (
    "for n in ('hmac', 'unittest', 'logging', 'functools', 'asyncio', 'hashlib', 'json'):\n"
    "    try:\n"
    "        m = __import__(n)\n"
    "        print(n, 'fs' if getattr(m, 'FROM_FS', 0) else 'yes')\n"
    "    except ImportError:\n"
    "        print(n, 'no')\n"
)


def probe(vb):
    return dict(line.split() for line in vb.exec(PROBE).strip().splitlines())


def test_stock_board_has_only_the_stock_frozen_modules_and_what_is_installed(tmp_path):
    # A module installed in /lib imports (as on a board); a frozen extra of
    # this port that is not installed is an ImportError; built-ins and
    # stock firmware's frozen asyncio stay.
    stock = VBoard(tmp_path / "stock", extra=["--stock"])
    os.makedirs(os.path.join(stock.fs, "lib"))
    with open(os.path.join(stock.fs, "lib", "hmac.py"), "w") as f:
        f.write("FROM_FS = 1\n")
    os.makedirs(tmp_path / "full")
    full = VBoard(tmp_path / "full")
    try:
        stock.start()
        got = probe(stock)
        assert got == {"hmac": "fs", "unittest": "no", "logging": "no", "functools": "no", "asyncio": "yes", "hashlib": "yes", "json": "yes"}, got
        # Without --stock the port's frozen extras are there: the flag is
        # what hides them.
        full.start()
        got = probe(full)
        assert got["hmac"] == got["unittest"] == got["logging"] == "yes", got
    finally:
        stock.stop()
        full.stop()


def test_make_deploy_leaves_a_stock_board_where_the_app_runs(tmp_path):
    # `make deploy PORT=... APP=1 CONFIG=qcd.json` is `qcdboard deploy
    # --port ... --app --config qcd.json`; then the board is powered on and
    # main.py runs the app: IKE SA up with the gateway (group 31, the default),
    # QCD token handed over.
    gw = Peer(str(tmp_path), "gw", gateway_config(retransmit=QUICK_RETRANSMIT)).start()
    state = tmp_path / "board"
    os.makedirs(state)
    cfg = tmp_path / "qcd.json"
    cfg.write_text(json.dumps(peers.app_config(gw.ports(), qcd={"role": "maker", "style": "5.1", "rate": 100, "burst": 100})))
    vb = VBoard(state, extra=["--net", "--stock"])
    try:
        vb.start()
        assert probe(vb)["hmac"] == "no"  # stock firmware freezes no hmac
        r = vb.qcdboard("deploy", "--port", vb.tty, "--app", "--config", str(cfg))
        assert r.returncode == 0, r.stdout + r.stderr
        vb.power_cycle()
        st = gw.wait(one_up, timeout=180, what="IKE SA from the app on the stock board")
        gw.wait(lambda s: s["hook"]["tokens_held"] == 1, timeout=60, what="token handed over by the app")
        assert len(st["ike_sas"]) == 1
        # One IKE_SA_INIT: group 31 with the board's hand-written X25519
        # against the gateway's OpenSSL one, no INVALID_KE_PAYLOAD round.
        assert gw.log().count("in IKE_SA_INIT") == 1, gw.log()[-3000:]
    finally:
        vb.stop()
        gw.kill()


def test_mip_install_on_a_stock_board_needs_no_index_and_imports(tmp_path):
    # package.json has no micropython-lib dependency any more: with an
    # empty local index (no network here) mip installs every file and
    # asks the index for nothing; the package then imports on stock firmware.
    index = tmp_path / "index"
    index.mkdir()
    os.makedirs(tmp_path / "board")
    vb = VBoard(tmp_path / "board", extra=["--stock"])
    try:
        vb.start()
        r = vb.qcdboard("deploy", "--port", vb.tty, "--mip", os.path.join(ROOT, "package.json"), "--index", str(index))
        out = r.stdout + r.stderr
        assert r.returncode == 0, out
        assert "Installing: /lib/qcd/tokens.py" in out and "Installing: /lib/ikebase/hmac256.py" in out, out
        assert str(index) + "/package" not in out, out
        code = "import qcd.tokens, ike.dh\nprint(len(qcd.tokens.make_token(bytes(32), bytes(8), bytes(8))), ike.dh.public_len(31))"
        assert vb.exec(code).strip() == "32 32"
    finally:
        vb.stop()

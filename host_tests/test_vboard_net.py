# The virtual board with real UDP networking (vboard --net): the socket
# and select shims against the esp32 port's behaviour, and the firmware app
# (main.py -> qcdapp -> ike.device.run), unmodified, on MicroPython against a
# qcd-peer gateway over the host's loopback: token handed over, power cut
# (SIGKILL of the board process), power back on the same flash image, the
# gateway's liveness check or ESP packet answered with QCD; `qcdboard diag`
# over mpremote costs no IKE SA; the app's heap is collected while it runs.
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading

import pytest
import peers
from peers import QUICK_RETRANSMIT, Peer, gateway_config, one_up
from vboard_util import HeadlessBoard, VBoard

from support import VBOARD

HERE = os.path.dirname(os.path.abspath(__file__))


# ------------------------------------------------------------ the shims


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    """Run vboard_net_checks.py as the board's main.py once; its CHECK lines
    by name."""
    d = tmp_path_factory.mktemp("vnet")
    os.makedirs(d / "fs")
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(0.2)
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    (d / "fs" / "peer_port").write_text(str(peer.getsockname()[1]))
    (d / "fs" / "busy_port").write_text(str(busy.getsockname()[1]))
    with open(os.path.join(HERE, "vboard_net_checks.py")) as f:
        (d / "fs" / "main.py").write_text(f.read())
    stop = threading.Event()

    def answer():
        while not stop.is_set():
            try:
                data, addr = peer.recvfrom(100)
            except OSError:
                continue
            peer.sendto(b"pong-and-more", addr)

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    board = HeadlessBoard(d).start()
    try:
        rc = board.wait(timeout=180)
    finally:
        board.kill()
        stop.set()
        t.join()
        peer.close()
        busy.close()
    out = board.output()
    assert rc == 0 and "DONE" in out, out
    found = {}
    for line in out.splitlines():
        if line.startswith("CHECK "):
            name, value = line[6:].split(" ", 1)
            found[name] = value
    return found


def test_recvfrom_on_an_empty_socket_raises_eagain_or_etimedout_in_100ms_steps(checks):
    assert checks["eagain"] == "(True, True)"
    assert checks["short_timeout"] == "(True, True)"  # under 100 ms: one step, EAGAIN
    assert checks["timeout"] == "(True, True)"  # 0.25 s: ETIMEDOUT after >= 300 ms


def test_poll_times_out_with_nothing_ready(checks):
    assert checks["poll_timeout"] == "([], True)"


def test_addresses_must_be_dotted_ipv4(checks):
    assert checks["sendto_hostname"] == "('ValueError', 'invalid arguments')"
    assert checks["sendto_short_ip"] == "('ValueError', 'invalid arguments')"
    assert checks["sendto_too_big"] == "('OSError', 90)"  # EMSGSIZE
    assert checks["sendto_port_0"] == "True"  # EINVAL
    assert checks["getaddrinfo"] == "[(2, 1, 0, '127.0.0.1', ('127.0.0.1', 500))]"
    assert checks["getaddrinfo_name"] == "('OSError', -202)"  # no DNS: lwIP's EAI_FAIL
    assert checks["bind_name"] == "('OSError', -202)"
    assert checks["addr_in_use"] == "True"
    assert checks["tcp"] == "('OSError', 95)"  # UDP only


def test_a_datagram_goes_to_the_host_and_its_answer_comes_back_cut_to_the_buffer(checks):
    assert checks["sent"] == "4"
    assert checks["poll_in"] == "[(True, 1)]"
    assert checks["recv"] == "(b'pong', True)"
    assert checks["rest_discarded"] == "True"


def test_poll_register_modify_unregister_and_one_shot_ipoll(checks):
    assert checks["pollout"] == "[(True, 4)]"  # nothing queued: writable only
    assert checks["ipoll_oneshot"] == "([(True, 1)], [], [(True, 1)])"
    assert checks["unregistered"] == "[]"
    assert checks["modify_unknown"] == "True"


def test_a_closed_socket_is_ebadf_and_polls_as_nval(checks):
    assert checks["closed_recv"] == "True"
    assert checks["closed_poll"] == "[(True, 32)]"


def test_the_ports_own_select_still_polls_other_streams(checks):
    assert checks["builtin_poll"] == "[(True, 1)]"
    assert checks["builtin_poll_timeout"] == "([], True)"


def test_cryptolib_and_sha1_are_the_esp32_firmwares(checks):
    assert checks["aes_cbc"] == "'7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2'"
    assert checks["aes_cbc_one_way"] == "('ValueError', \"can't encrypt & decrypt\")"
    assert checks["aes_cbc_decrypt"] == "True"
    assert checks["aes_ecb"] == "'3ad77bb40d7a3660a89ecaf32466ef97'"
    assert checks["aes_bad"] == "(('ValueError', 'key'), ('ValueError', 'IV'), ('ValueError', 'blksize % 16'))"
    assert checks["sha1"] == "'a9993e364706816aba3e25717850c26c9cd0d89d'"
    assert checks["sha1_final"] == "('ValueError', 'hash is final')"
    assert checks["sha256"] == "'ba7816bf8f01cfea'"


def test_the_watchdog_resets_a_board_that_polls_without_feeding(tmp_path):
    os.makedirs(tmp_path / "fs")
    (tmp_path / "fs" / "main.py").write_text(
        "import machine, select\n"
        "if machine.reset_cause() == machine.WDT_RESET:\n"
        "    print('RESULT watchdog reset')\n"
        "else:\n"
        "    machine.WDT(timeout=300)\n"
        "    select.poll().poll(-1)\n"
    )
    board = HeadlessBoard(tmp_path).start()
    try:
        assert board.wait(timeout=120) == 0
    finally:
        board.kill()
    out = board.output()
    assert "task watchdog got triggered" in out and "RESULT watchdog reset" in out, out


# ------------------------------------------------- the firmware app on it


def gw_config():
    return gateway_config(retransmit=QUICK_RETRANSMIT)


def app_config(path, gw_ports, **changes):
    changes.setdefault("qcd", {"role": "maker", "style": "5.1", "rate": 100, "burst": 100})
    path.write_text(json.dumps(peers.app_config(gw_ports, **changes)))
    return path


@pytest.fixture
def app_up(tmp_path):
    """A gateway and the firmware app on a headless --net board: IKE SA up,
    token handed over."""
    gw = Peer(str(tmp_path), "gw", gw_config()).start()
    board = HeadlessBoard(tmp_path / "board", extra=["--net", "--gc-log"])
    os.makedirs(board.dir)
    try:
        board.start(app=app_config(tmp_path / "qcd.json", gw.ports()))
        gw.wait(one_up, timeout=120, what="IKE SA from the app on the virtual board")
        st = gw.wait(lambda s: s["hook"]["tokens_held"] == 1, what="token held by the gateway")
        out = board.wait_output("ike: Child SA")
        assert "qcd: token handed over (auth_request)" in out, out
        assert "store: <qcd.store 16 blocks" in out and "boot 1>" in out, out
        # After the power cut the app comes back without initiating (as
        # test_firmware_app_ike.py's second run): the gateway speaks first.
        app_config(tmp_path / "quiet.json", gw.ports(), start_delay_s=None, local=json.load(open(str(tmp_path / "qcd.json")))["local"])
        yield gw, board, st["ike_sas"][0]
    finally:
        board.kill()
        gw.kill()


def power_cycle(board):
    board.kill()  # a power cut: no Delete, nothing flushed
    board.start(app=os.path.join(os.path.dirname(board.dir), "quiet.json"))
    return board.wait_output("ike: listening on")  # flash mounted, sockets bound


def test_app_answers_the_gateways_liveness_check_with_qcd_after_a_power_cut(app_up):
    gw, board, sa = app_up
    secrets = re.search(r"secrets=([0-9a-f]+(?:,[0-9a-f]+)*)", board.output()).group(1)
    out = power_cycle(board)
    assert "store: <qcd.store 16 blocks, secrets=%s, children=1, boot 2>" % secrets in out, out
    assert gw.ctl("liveness")["ok"]
    gw.wait(lambda s: not s["ike_sas"], timeout=60, what="stale SA deleted by QCD")
    assert gw.status()["hook"]["taker"]["verified"] == 1
    out = board.wait_output("qcd: answered INVALID_IKE_SPI + QCD to 127.0.0.1:")
    assert "IKE_SA_INIT" not in out  # QCD did it, not a new SA's INITIAL_CONTACT


def test_app_answers_esp_for_the_old_child_sa_with_invalid_spi_and_qcd(app_up):
    # RFC 6290 §8.2: the Child SPI map in the qcd partition survived the
    # power cut, so the gateway's next ESP packet gets the token at once.
    gw, board, sa = app_up
    power_cycle(board)
    mark = len(gw.log())
    r = gw.ctl("esp")
    assert r["ok"] and r["packet"][:8] == sa["children"][0]["spi_out"]
    gw.wait(lambda s: not s["ike_sas"], timeout=60, what="stale SA deleted by QCD")
    log = gw.log()[mark:]
    assert "verified token" in log and "out INFORMATIONAL" not in log  # no liveness check needed
    board.wait_output("answered INVALID_SPI + QCD")


def test_app_heap_is_collected_at_the_top_level_while_the_ike_sa_lives(tmp_path):
    # A low --yield-kb makes the app yield often: each yield unwinds it to the
    # top level (the collection runs there) and qcdapp.resume() continues
    # with the same engine and sockets: the SA answers liveness checks
    # throughout, and the heap after each collection stays flat.
    gw = Peer(str(tmp_path), "gw", gw_config(), pcap=False).start()
    board = HeadlessBoard(tmp_path / "board", extra=["--net", "--gc-log", "--yield-kb", "48"])
    os.makedirs(board.dir)
    try:
        board.start(app=app_config(tmp_path / "qcd.json", gw.ports()))
        st = gw.wait(one_up, timeout=120, what="IKE SA")
        spi = st["ike_sas"][0]["spi_i"]
        board.wait_output("ike: Child SA")
        gc_line = r"vboard: gc \d+ at top level: \d+ -> (\d+) bytes"
        start = len(re.findall(gc_line, board.output()))  # the collections of the start-up (imports)
        collections = []
        for _ in range(600):
            mark = len(gw.log())
            assert gw.ctl("liveness")["ok"]
            gw.wait_log("liveness check of", start=mark, timeout=60)
            collections = [int(m) for m in re.findall(gc_line, board.output())][start:]
            if len(collections) >= 4:
                break
        assert len(collections) >= 4, board.output()[-3000:]
        assert max(collections) < 2 * min(collections), collections  # live data does not grow
        out = board.output()
        assert "ike: continuing on 127.0.0.1 port" in out and "with 1 IKE SA(s)" in out
        st = gw.status()
        assert len(st["ike_sas"]) == 1 and st["ike_sas"][0]["spi_i"] == spi  # the same SA throughout
        assert "liveness check of" in gw.log() and gw.log().count("in IKE_SA_INIT") == 1
    finally:
        board.kill()
        gw.kill()


def test_diag_over_mpremote_interrupts_the_app_and_it_continues_with_its_sa(tmp_path):
    # The pty board: qcdboard diag (mpremote: Ctrl-C, raw REPL, diag script,
    # then `exec --no-follow qcdapp.resume()`). The app keeps its engine: the
    # gateway's SA stays the only one and answers a liveness check after.
    gw = Peer(str(tmp_path), "gw", gw_config()).start()
    state = tmp_path / "board"
    os.makedirs(state)
    cfg = app_config(tmp_path / "qcd.json", gw.ports())
    vb = VBoard(state, extra=["--net", "--app", str(cfg)])
    try:
        vb.start()
        st = gw.wait(one_up, timeout=120, what="IKE SA")
        spi = st["ike_sas"][0]["spi_i"]
        for _ in range(2):
            r = vb.qcdboard("diag", "--port", vb.tty)
            assert r.returncode == 0, r.stdout + r.stderr
            assert "app: stopped by diag" in r.stdout and "live_ike_sas: 1" in r.stdout, r.stdout
            assert "app: resumed" in r.stdout, r.stdout
            mark = len(gw.log())
            assert gw.ctl("liveness")["ok"]
            gw.wait_log("liveness check of", start=mark, timeout=60)
        st = gw.status()
        assert len(st["ike_sas"]) == 1 and st["ike_sas"][0]["spi_i"] == spi
        assert gw.log().count("in IKE_SA_INIT") == 1  # no new SA: the diag cost none
    finally:
        vb.stop()
        gw.kill()


def test_headless_board_needs_no_terminal_and_its_pid_is_the_board(tmp_path):
    # What the demo relies on: the started process is the node process (so a
    # SIGKILL is a power cut), and main.py's output is on its stdout.
    os.makedirs(tmp_path / "fs")
    (tmp_path / "fs" / "main.py").write_text("import select\nprint('RESULT up')\nselect.poll().poll(-1)\n")
    board = HeadlessBoard(tmp_path).start()
    try:
        board.wait_output("RESULT up")
        with open("/proc/%d/cmdline" % board.proc.pid, "rb") as f:
            argv = f.read().split(b"\0")
        assert os.path.basename(argv[0]).startswith(b"node") and argv[1].endswith(b"vboard.mjs"), argv
    finally:
        board.kill()
    assert board.proc.returncode == -signal.SIGKILL
    r = subprocess.run([sys.executable, VBOARD, "--dir", str(tmp_path), "--gc-log"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "go with --net" in r.stderr

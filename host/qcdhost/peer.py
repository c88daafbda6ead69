"""qcd-peer: run the compact IKEv2 engine (lib/ike) with QCD (lib/qcd) on a host.

  qcd-peer run CONFIG.json [--pcap FILE] [--control SOCKET] [--quiet-stop] [--max-s N]
  qcd-peer ctl SOCKET COMMAND [ARG] [--wait S]
  qcd-peer check CONFIG.json

`run` serves one IKE peer (initiator or responder, docs/config.md) on UDP
sockets, logs every IKE message, SA change and QCD event on one line with a
UTC timestamp, and stops cleanly on SIGINT or SIGTERM: it sends a Delete for
each IKE SA and waits up to 2 s for the answers (--quiet-stop: close without
a word, as a power cut would). --pcap writes every datagram sent and received
to a pcap file (IPv4/UDP headers synthesised; tshark decodes it with
`-d udp.port==PORT,isakmp` for non-standard ports). --control opens a Unix
datagram socket that takes one command per datagram and answers JSON:

  status        IKE SAs, Child SAs, counters, the QCD hook's status
  initiate      start an IKE SA with the configured peer
  liveness      send a liveness check (empty INFORMATIONAL)
  rekey-ike     rekey the newest IKE SA        rekey-child   rekey its Child SA
  delete-child  delete its Child SA            delete-ike    delete it
  esp [HEX]     send one ESP-in-UDP packet into the Child SA (default: an
                ICMP echo request between the traffic selectors)
  flash-cut [N] with qcd.image: tear the Nth next flash program/erase and
                die there, exit status 137 (a power cut mid-write)
  send IP:PORT TEXT  a UDP datagram through the tunnel (config "tunnel"
                section; from our default tunnel socket)
  recv          the datagrams that came back to that socket (and empty it)
  ping IP [SEQ] an ICMP echo request through the tunnel
  tunnel        the data plane: inner address, counters, echo replies
  stop          stop as on SIGTERM

With a "tunnel" section (docs/config.md) the peer carries data: ike.tunnel
on the engine, the same API a device app uses; --echo PORT answers every UDP
datagram to that tunnel port with the same payload (an echo service on the
protected side), so a device's readings come back.

`ctl` sends one such command and prints the answer. A command that cannot
run says why in its answer ("error"; "retry": true when that may pass by
itself, e.g. an initiator still in its start_delay_s); --wait S retries
until it can run (the peer answers, an IKE SA is up) or S seconds have
passed. `check` validates a configuration: one for qcd-peer, or a device's
(with the firmware app's "wifi"/"device" sections, e.g.
firmware/qcd.json.example), checked by the app's own code. Exit status: 0
done, 1 a command failed, 2 wrong arguments or an unusable configuration.
"""

import argparse
import json
import os
import sys
import time

from ike import config as ikeconfig
from ike.engine import Engine
from qcdhost import need
from qcdhost.ikeshell import HostShell, control, make_logger


class UsageError(Exception):
    pass


def build_hook(cfg, log):
    """The QCD hook from the configuration's "qcd" section (docs/config.md)
    and its key source (a flash store, or None), or (None, None). lib/ike
    knows nothing of it; this tool joins the two."""
    q = cfg.extra.get("qcd") or {}
    if not isinstance(q, dict):
        raise UsageError("qcd must be an object")
    role = q.get("role", "none")
    if role == "none":
        return None, None
    from qcd import hook as qhook
    from qcd.tokens import STYLE_ADDR, STYLE_SPIS

    roles = {"maker": qhook.MAKER, "taker": qhook.TAKER, "both": qhook.MAKER | qhook.TAKER}
    if role not in roles:
        raise UsageError("qcd.role must be maker, taker, both or none")
    style = {"5.1": STYLE_SPIS, "5.2": STYLE_ADDR}.get(str(q.get("style", "5.1")))
    if style is None:
        raise UsageError("qcd.style must be \"5.1\" or \"5.2\"")
    keys = None
    flash = None
    if roles[role] & qhook.MAKER:
        keys, flash = open_keys(q)
    kw = {}
    if "rate" in q:
        kw["rate"] = q["rate"]
    if "burst" in q:
        kw["burst"] = q["burst"]
    if q.get("window_s") is not None:
        kw["window_ms"] = int(q["window_s"] * 1000)
    kw["restrict_to_peer"] = bool(q.get("restrict_to_peer", False))
    if cfg.peer_addr != "0.0.0.0":
        kw["gateways"] = [cfg.peer_addr]  # a rate-limit lane of its own (issue 13 §2)
    h = qhook.QcdHook(roles[role], keys, style, log=log, **kw)
    return h, flash


def open_keys(q):
    """The maker's key source: the flash image of the device (qcd.store on
    the flash emulator), or a 32-byte secret file (created on first use)."""
    if q.get("image"):
        return open_image(q)
    path = q.get("secret_file")
    if not path:
        raise UsageError("a QCD maker needs qcd.image (flash image) or qcd.secret_file")
    from qcdhost.keys import MemoryKeys
    from qcd.tokens import SECRET_LEN

    if not os.path.exists(path):
        # RFC 6290 §5.1: the secret is generated at first start and kept.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(SECRET_LEN))
    with open(path, "rb") as f:
        secret = f.read(SECRET_LEN + 1)
    if len(secret) != SECRET_LEN:
        raise UsageError("qcd.secret_file must hold exactly %d bytes" % SECRET_LEN)
    return MemoryKeys([secret]), None


def open_image(q):
    """qcd.store mounted on the flash emulator (qcdhost.emu.flash) over the image file (created,
    erased, on first use): the device's `qcd` partition, secret and Child SPI
    map, surviving restarts and power cuts like the real flash."""
    try:
        from qcd import store as qstore
        from qcdhost.emu.flash import FileBacking, FlashEmu, create_image
    except ImportError as e:
        raise UsageError("qcd.image needs qcd.store and qcdhost.emu.flash (%s); use qcd.secret_file" % e)
    path = q["image"]
    try:
        if not os.path.exists(path):
            create_image(path, int(q.get("image_blocks", 8)), encrypted=bool(q.get("image_encrypted", False)))
        emu = FlashEmu(FileBacking(path), seed=int(q.get("cut_seed", 0)))
        st = qstore.mount(emu)
    except (OSError, ValueError) as e:
        raise UsageError("cannot use flash image %s: %s" % (path, e))
    return st, emu


def cmd_run(args):
    log = make_logger(sys.stdout)
    try:
        cfg = ikeconfig.load(args.config)
    except (OSError, ValueError) as e:
        raise UsageError("%s: %s" % (args.config, e))
    try:
        hook, flash = build_hook(cfg, log)
    except UsageError as e:
        hint = ""
        if is_device_config(cfg) and "qcd.image" in str(e):
            hint = " (a device configuration: on a board the key source is its qcd partition; for qcd-peer add qcd.image)"
        raise UsageError("%s: %s%s" % (args.config, e, hint))
    eng = Engine(cfg, hook, log=log)

    def status():
        st = hook.status()
        if flash is not None:
            st["flash"] = {"ops": flash.ops, "erases": flash.erases, "store": hook.keys.status()}
        return st

    def flash_cut(words):
        # Emulated flash only: tear the Nth next program/erase operation and
        # die there, as a power cut would (qcdhost.emu.flash, cut_at).
        if flash is None:
            return {"ok": False, "error": "no emulated flash (qcd.image)"}
        n = int(words[1]) if len(words) > 1 else 1
        flash.cut_at = flash.ops + n
        log("flash: power cut armed at operation %d" % flash.cut_at)
        return {"ok": True, "cut_at": flash.cut_at}

    tun = None
    if "tunnel" in cfg.extra or args.echo:
        from ike.tunnel import Tunnel

        try:
            tun = Tunnel(eng)
        except ValueError as e:
            raise UsageError("%s: %s" % (args.config, e))
    commands = {"flash-cut": flash_cut}
    if tun is not None:
        commands.update(tunnel_commands(tun, log, args.echo))
    shell = HostShell(
        eng,
        pcap=args.pcap,
        control=args.control,
        log=log,
        status=(status if hook is not None else None),
        quiet_stop=args.quiet_stop,
        commands=commands,
    )
    if tun is not None:
        tun.wake = shell._flush
    shell.install_signals()
    try:
        shell.open()
    except OSError as e:
        raise UsageError("cannot open the UDP sockets: %s" % e)
    log("qcd-peer: %s, QCD %s, id %s, peer %s" % (cfg.role, (cfg.extra.get("qcd") or {}).get("role", "none"), cfg.id_local_text, cfg.id_peer_text))
    if flash is not None:
        log("flash: %s, secret %s, %d Child SPI map entries" % (cfg.extra["qcd"]["image"], ",".join(hook.status().get("secrets", [])) or "-", hook.keys.child_count()))
    try:
        shell.run(args.max_s)
    except BaseException as e:
        if type(e).__name__ == "PowerCut":
            # The emulated flash lost power mid-operation: so does this
            # "device". No Delete, no clean close.
            log("flash: POWER CUT at operation %d (%s)" % (flash.cut_at, flash.torn))
            sys.stdout.flush()
            os._exit(137)
        raise
    return 0


class Echo:
    """The UDP echo service on a tunnel port: the socket's waker (it has
    set(), like the asyncio.Event ike.aio uses) answers at once."""

    def __init__(self, sock, log):
        self.sock = sock
        self.log = log

    def set(self):
        while True:
            got = self.sock.recvfrom()
            if got is None:
                return
            data, addr = got
            try:
                self.sock.sendto(data, addr)
                self.log("tunnel: echoed %d octets to %s:%d" % (len(data), addr[0], addr[1]))
            except ValueError as e:
                self.log("tunnel: cannot echo to %s:%d: %s" % (addr[0], addr[1], e))


def tunnel_commands(tun, log, echo_port):
    """Control commands for the data plane (send, recv, ping, tunnel)."""
    from ike.tunnel import TunnelError

    if echo_port:
        s = tun.socket(echo_port)
        s.event = Echo(s, log)
        log("tunnel: UDP echo service on tunnel port %d" % echo_port)

    def send(words):
        if len(words) < 2 or ":" not in words[1]:
            return {"ok": False, "error": "usage: send IP:PORT TEXT"}
        host, _, port = words[1].rpartition(":")
        try:
            n = tun.sendto(" ".join(words[2:]).encode(), (host, int(port)))
        except (TunnelError, ValueError) as e:
            return {"ok": False, "error": str(e)}
        return {"ok": True, "sent": n, "from": [tun.address(), tun._default.port]}

    def recv(words):
        out = []
        while True:
            got = tun.recvfrom()
            if got is None:
                break
            out.append({"payload": got[0].decode("utf-8", "replace"), "from": "%s:%d" % got[1]})
        return {"ok": True, "datagrams": out}

    def ping(words):
        if len(words) < 2:
            return {"ok": False, "error": "usage: ping IP [SEQ]"}
        try:
            tun.ping(words[1], int(words[2]) if len(words) > 2 else 1)
        except (TunnelError, ValueError) as e:
            return {"ok": False, "error": str(e)}
        return {"ok": True}

    def status(words):
        st = tun.status()
        st["replies"] = [list(r) for r in tun.replies]
        st["ok"] = True
        return st

    return {"send": send, "recv": recv, "ping": ping, "tunnel": status}


def cmd_ctl(args):
    # --wait S: retry, for up to S seconds, while nobody answers on the
    # socket yet (the peer is starting: it opens its control socket after
    # its UDP sockets) or the answer says the command cannot run *yet*
    # ("retry": true, e.g. no IKE SA up before start_delay_s has passed).
    end = time.monotonic() + (args.wait or 0)
    while True:
        try:
            reply = control(args.socket, " ".join(args.command), timeout=args.timeout)
        except OSError as e:
            if time.monotonic() < end:
                time.sleep(0.2)
                continue
            hint = " after waiting %g s" % args.wait if args.wait else " (is `qcd-peer run ... --control %s` running? --wait S waits for it)" % args.socket
            raise UsageError("no answer from %s%s: %s" % (args.socket, hint, e))
        if reply.get("ok") or not reply.get("retry") or time.monotonic() >= end:
            break
        time.sleep(0.2)
    print(json.dumps(reply, indent=1, sort_keys=True))
    return 0 if reply.get("ok") else 1


def is_device_config(cfg):
    """A configuration for the firmware app on a board (firmware/qcdapp.py):
    it has the app's own sections, and its key source is the board's `qcd`
    partition rather than qcd.image or qcd.secret_file."""
    return "wifi" in cfg.extra or "device" in cfg.extra


def check_device_config(path):
    """Check `path` the way the firmware app does at boot (qcdapp's own
    load_config and make_hook, firmware/qcdsetup.py, on a throw-away key
    source); returns a sentence saying what it configures, raises
    UsageError naming the file."""
    from qcdhost.emu.hostapp import load_app
    from qcdhost.keys import MemoryKeys

    qcdapp = load_app()
    qcdsetup = load_app("qcdsetup")

    try:
        cfg = qcdsetup.load_config(path)
        qcdsetup.make_hook(cfg, MemoryKeys([bytes(32)]), 0, None)
    except qcdapp.SetupError as e:
        msg = str(e)
        raise UsageError(msg if path in msg else "%s: %s" % (path, msg))
    except (TypeError, ValueError) as e:
        raise UsageError("%s: %s" % (path, e))
    q = cfg.get("qcd") or {}
    dev = cfg.get("device") or {}
    return "device configuration for the firmware app: QCD %s on partition %r, watchdog %s s" % (
        q.get("role", "maker"), dev.get("partition", "qcd"), dev.get("watchdog_s", qcdapp.DEFAULT_WATCHDOG_S))


def cmd_check(args):
    try:
        cfg = ikeconfig.load(args.config)
    except (OSError, ValueError) as e:
        raise UsageError("%s: %s" % (args.config, e))
    if is_device_config(cfg):
        what = check_device_config(args.config)
    else:
        try:
            build_hook(cfg, None)
        except UsageError as e:
            raise UsageError("%s: %s" % (args.config, e))
        what = "qcd-peer configuration, QCD %s" % (cfg.extra.get("qcd") or {}).get("role", "none")
    if "tunnel" in cfg.extra:
        from ike.tunnel import settings

        try:
            settings(cfg)
        except ValueError as e:
            raise UsageError("%s: %s" % (args.config, e))
    print("%s: ok (%s, id %s, peer id %s; %s)" % (args.config, cfg.role, cfg.id_local_text, cfg.id_peer_text, what))
    return 0


def lend_names():
    """lib/ike's log names the notify types its engine handles (a device
    keeps that table short); on a host it gets every IANA name (qcdhost.names),
    so a peer's MOBIKE_SUPPORTED is logged as such, not as N_16396."""
    from ike import const
    from qcdhost import names

    const.NOTIFY_NAMES.update(names.NOTIFY_NAMES)


def main(argv=None):
    lend_names()
    p = argparse.ArgumentParser(prog="qcd-peer", description=__doc__.split("\n\n")[0])
    need.version_action(p, "qcd-peer")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="serve one IKE peer from a configuration file")
    r.add_argument("config")
    r.add_argument("--pcap", help="write every datagram to this pcap file")
    r.add_argument("--control", help="Unix datagram socket for commands")
    r.add_argument("--quiet-stop", action="store_true", help="on a signal, close without sending Deletes")
    r.add_argument("--max-s", type=float, help="stop after this many seconds")
    r.add_argument("--echo", type=int, metavar="PORT", help="UDP echo service on this tunnel port (opens the data plane)")
    c = sub.add_parser("ctl", help="send one command to a running qcd-peer")
    c.add_argument("socket")
    c.add_argument("command", nargs="+")
    c.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for one answer (default %(default)s)")
    c.add_argument("--wait", type=float, metavar="S", default=0, help="wait up to S seconds until the command can run: the peer answers, and an IKE SA is up for commands that need one")
    k = sub.add_parser("check", help="validate a configuration file")
    k.add_argument("config")
    args = p.parse_args(argv)
    if args.cmd == "run":
        # IKE's DH, PRF, AES-GCM and signatures: without them the peer would
        # listen and fail only mid-handshake.
        need.modules("qcd-peer", ["cryptography"])
    try:
        return {"run": cmd_run, "ctl": cmd_ctl, "check": cmd_check}[args.cmd](args)
    except UsageError as e:
        sys.stderr.write("qcd-peer: %s\n" % e)
        return 2


if __name__ == "__main__":
    sys.exit(main())

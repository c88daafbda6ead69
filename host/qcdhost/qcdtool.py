"""qcdtool: check on a host what a QCD device will say.

For field engineers: compute the token a device with a given secret hands
out, the unprotected answer it sends to a datagram captured on the wire, and
decode IKE datagrams with notify types by name. Runs lib/qcd itself (the code
the device runs), on CPython.

And for the device's `qcd` flash partition (lib/qcd/store.py, docs/FORMAT.md):
make an erased image, provision a secret into it (backup gateways that must
answer with the same tokens, RFC 6290 §6), and decode a raw dump.

  qcdtool token   (--secret-file F | --image IMAGE) --spi-i HEX --spi-r HEX [--peer ADDR]
  qcdtool respond (--secret-file F | --image IMAGE) --from ADDR:PORT [--style 5.1|5.2] HEX
  qcdtool decode  HEX
  qcdtool image new IMAGE [--blocks N] [--encrypted] [--force]
  qcdtool provision IMAGE --secret-file F
  qcdtool inspect IMAGE [--json]

An IMAGE is the partition's raw bytes, as `esptool read-flash OFFSET SIZE`
dumps it or the flash emulator (qcdhost.emu.flash) keeps it; the emulator's
sidecar IMAGE.emu.json, if present, says whether it is encrypted (and holds
its device key) and counts erases.

Exit status: 0 done; 1 the device would stay silent (respond), the datagram
is malformed (decode), or the image holds no QCD secret (inspect), with the
reason on stderr; 2 wrong arguments or an unreadable file.
"""

import argparse
import os
import sys

from qcd import store as qstore
from qcd import wire
from qcd.maker import Maker
from qcd.tokens import SECRET_LEN, STYLE_ADDR, STYLE_SPIS, fingerprint, ip_bytes, make_token
from qcdhost import names, need, private
from qcdhost.emu import flash as flashemu
from qcdhost.keys import MemoryKeys


class UsageError(Exception):
    pass


# Why a maker stayed silent, by the counter that moved.
REASONS = {
    "refused_malformed": "not a well-formed IKE message or ESP packet",
    "refused_response": "it is a response; RFC 7296 §2.21.4 never answers a response",
    "refused_unprotected": "it is not protected (first payload not SK/SKF); RFC 6290 §4.5 answers protected requests only",
    "refused_sa_init": "it is an IKE_SA_INIT (or its responder SPI is zero); those are never answered",
    "refused_exchange": "reserved or unknown exchange type",
    "refused_known_sa": "the SA is live on this node (RFC 6290 §9.2)",
    "refused_unmapped": "no Child SPI mapping for this ESP SPI",
    "refused_window": "outside the answer window after boot",
    "refused_rate": "rate limit",
    "refused_no_secret": "no secret held",
}


# The store's damage reports as sentences: status()["damage"] holds tuples
# (code, args...) of small ints (qcd.log and qcd.records, their _D_ names;
# host_tests/test_store_crafted.py checks this table against them). The
# device keeps only the codes.
DAMAGE = {
    1: "block {0}: a write at offset {1} read back wrong (worn flash?)",
    2: "block {0}: a write at offset {1} failed (errno {2})",
    3: "block {0}: erase failed (errno {1}; -1: it returned an error code)",
    4: "block {0}: unreadable (errno {1})",
    5: "block {0}: header fails its CRC (an interrupted erase or open, or damage); block not used",
    6: "block {0}: format version {1}, not 1: left alone",
    7: "blocks {0} and {1}: both have seq {2}",
    8: "log block with seq {0} is missing: records it held are lost",
    9: "block {0}: damaged record at offset {1}; {2} later record(s) kept",
    10: "block {0}: torn or damaged bytes at offset {1} (a write cut short?)",
    11: "block {0} offset {1}: record type {2} unknown (newer format?), skipped",
    12: "block {0} offset {1}: record type {2} with wrong length {3}, skipped",
    13: "block {0} offset {1}: IKE SA id {2} above any a writer allocates, skipped",
    14: "block {0} offset {1}: more than %d live secret generations, generation {2} dropped" % qstore.MAX_GENERATIONS,
    15: "the log holds more Child SAs than the cap ({0}): {1} evicted while reading it",
    16: "Child SPI {0:08x}: its IKE SA record is lost; entry dropped",
}


def damage_text(d):
    """One damage report of the store (a tuple (code, args...)) as a sentence."""
    try:
        return DAMAGE[d[0]].format(*d[1:])
    except (KeyError, IndexError, ValueError, TypeError):
        return "damage %r (unknown code: a newer store?)" % (tuple(d),)


def read_secret(path):
    try:
        with open(path, "rb") as f:
            data = f.read(SECRET_LEN + 1)
    except OSError as e:
        raise UsageError("cannot read secret file %s: %s" % (path, e.strerror or e))
    if len(data) != SECRET_LEN:
        raise UsageError(
            "secret file %s must hold exactly %d raw bytes (it holds %s)"
            % (path, SECRET_LEN, "more" if len(data) > SECRET_LEN else len(data))
        )
    return data


def parse_hex(text, what, length=None):
    t = "".join(text.split()).replace(":", "")
    if t.lower().startswith("0x"):
        t = t[2:]
    try:
        b = bytes.fromhex(t)
    except ValueError:
        raise UsageError("%s is not hex: %r" % (what, text[:40]))
    if length is not None and len(b) != length:
        raise UsageError("%s must be %d bytes (%d hex digits), got %d" % (what, length, 2 * length, len(b)))
    return b


def parse_addr(text):
    try:
        ip_bytes(text)
    except ValueError:
        raise UsageError("not an IPv4 or IPv6 address: %r" % text)
    return text


def parse_hostport(text):
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError("--from wants ADDR:PORT (IPv6 as [ADDR]:PORT), got %r" % text)
    return parse_addr(host), int(port)


def open_image(path, readonly=True):
    """The image as a flash emulator (read-only unless asked)."""
    try:
        backing = flashemu.FileBacking(path, readonly=readonly)
    except OSError as e:
        raise UsageError("cannot open image %s: %s" % (path, e.strerror or e))
    if backing.size == 0 or backing.size % flashemu.BLOCK_SIZE:
        backing.close()
        raise UsageError("image %s is %d bytes, not a whole number of 4096-byte blocks" % (path, backing.size))
    blocks = backing.size // flashemu.BLOCK_SIZE
    if not qstore.MIN_BLOCKS <= blocks <= qstore.MAX_BLOCKS:
        backing.close()
        raise UsageError("image %s has %d blocks; a qcd partition has %d to %d" % (path, blocks, qstore.MIN_BLOCKS, qstore.MAX_BLOCKS))
    try:
        return flashemu.FlashEmu(backing, readonly=readonly)
    except ValueError as e:
        raise UsageError("image %s: %s" % (path, e))


def mount_image(path, readonly=True, **kw):
    emu = open_image(path, readonly)
    try:
        return emu, qstore.Store(emu, None, readonly=readonly, count_boot=False, **kw)
    except OSError as e:
        raise UsageError("cannot read image %s: %s" % (path, e))


def keys_from_image(path):
    """The secrets and Child SPI map held in a partition image (read-only)."""
    _, st = mount_image(path)
    if not st.secrets():
        raise UsageError("image %s holds no QCD secret (%s)" % (path, why_empty(st)))
    return st


def why_empty(st):
    if not any(st.block_info(b)[0] == qstore.S_LIVE for b in range(st.blocks)):
        return "no qcd log in it: blank, not a qcd partition, or the raw dump of an encrypted partition"
    return "its log has no secret record"


def keys_from(args):
    if getattr(args, "image", None):
        if args.secret_file:
            raise UsageError("give --secret-file or --image, not both")
        return keys_from_image(args.image)
    if not args.secret_file:
        raise UsageError("give --secret-file F (32 raw bytes) or --image IMAGE")
    return MemoryKeys([read_secret(args.secret_file)])


def cmd_token(args):
    keys = keys_from(args)
    spi_i = parse_hex(args.spi_i, "--spi-i", 8)
    spi_r = parse_hex(args.spi_r, "--spi-r", 8)
    addr = ip_bytes(parse_addr(args.peer)) if args.peer else None
    for secret in keys.secrets():
        print(make_token(secret, spi_i, spi_r, addr).hex())
    return 0


def cmd_respond(args):
    keys = keys_from(args)
    src = parse_hostport(args.source)
    data = parse_hex(args.datagram, "datagram")
    style = STYLE_ADDR if args.style == "5.2" else STYLE_SPIS
    maker = Maker(keys, style=style, protocol_id=args.protocol_id, rate=None)
    marker = b""
    body = data
    if len(data) > 4 and data[:4] == bytes(4):
        # RFC 3948 non-ESP marker: an IKE message on UDP 4500. (On UDP 500
        # the first octets are the initiator's SPI, which is never zero.)
        marker, body = data[:4], data[4:]
    spi = wire.esp_spi(body)
    if not marker and wire.parse(body) is None and spi is not None and keys.child_get(spi) is not None:
        # Not IKE, and a Child SA of the map owns its first four octets: an
        # ESP packet on UDP 4500, answered per RFC 6290 §8.2.
        kind = "esp"
        out = maker.answer_esp(body, 0)
        marker = bytes(4)
    else:
        kind = "ike"
        out = maker.answer_ike(wire.parse(body), src[0], 0)
    if out is None:
        moved = [k for k, v in maker.counters.items() if v and k.startswith("refused_")]
        why = REASONS.get(moved[0], moved[0]) if moved else "no answer"
        if moved and moved[0] == "refused_malformed" and kind == "ike":
            wire.parse(body)
            why += " (%s)" % wire.last_error
        print("qcdtool: the device stays silent: %s" % why, file=sys.stderr)
        return 1
    # Several answers (a tuple) when the key source holds several secrets
    # and cannot tell which one made the peer's token: one line each.
    for a in out if isinstance(out, tuple) else (out,):
        print((marker + a).hex())
    return 0


def cmd_decode(args):
    data = parse_hex(args.datagram, "datagram")
    lines = None
    if wire.parse(data) is not None:
        lines = names.describe(data)
    elif len(data) >= 4 and data[:4] == bytes(4) and wire.parse(data[4:]) is not None:
        lines = ["non-ESP marker (UDP 4500)"] + names.describe(data[4:])
    elif len(data) >= 4 and data[:4] != bytes(4) and wire.esp_spi(data) is not None:
        wire.parse(data)
        lines = ["ESP packet (UDP 4500): SPI %s, sequence %d, %d octets (or a malformed IKE message: %s)"
                 % (data[:4].hex(), int.from_bytes(data[4:8], "big"), len(data), wire.last_error)]
    if lines is None:
        body = data[4:] if data[:4] == bytes(4) else data
        wire.parse(body)
        print("qcdtool: malformed IKE datagram: %s" % wire.last_error, file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


def cmd_image_new(args):
    if not qstore.MIN_BLOCKS <= args.blocks <= qstore.MAX_BLOCKS:
        raise UsageError("--blocks must be %d to %d (4 KiB each; 16 is the 64 KiB reference)" % (qstore.MIN_BLOCKS, qstore.MAX_BLOCKS))
    if os.path.exists(args.image) and not args.force:
        raise UsageError("%s exists; give --force to overwrite it" % args.image)
    try:
        flashemu.create_image(args.image, args.blocks, encrypted=args.encrypted)
    except OSError as e:
        raise UsageError("cannot write %s: %s" % (args.image, e.strerror or e))
    print("%s: erased %d-block (%d KiB) qcd partition image%s" % (
        args.image, args.blocks, args.blocks * 4, ", encrypted (device key in %s%s)" % (args.image, flashemu.META_SUFFIX) if args.encrypted else ""))
    return 0


def cmd_provision(args):
    secret = read_secret(args.secret_file)
    # The secret goes into IMAGE in clear (unless the image is encrypted): an
    # image made elsewhere (another tool, an old qcdtool) that others can
    # read loses group and other access before it gets the secret.
    # (`qcdtool image new` creates images 0600.)
    for path in (args.image, args.image + flashemu.META_SUFFIX):
        try:
            if private.restrict(path):
                print("qcdtool: %s was readable by others; now 0600 before the secret goes in" % path, file=sys.stderr)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise UsageError("cannot restrict %s to its owner: %s" % (path, e.strerror or e))
    emu, st = mount_image(args.image, readonly=False, initial_secret=secret)
    fp = fingerprint(secret)
    try:
        if st.secrets() and st.secrets()[0] == secret:
            what = "written" if st.fresh_secret else "already the current secret"
        else:
            st.rollover(secret)
            what = "added as the current secret; older ones stay until retired: %s" % ", ".join(fingerprint(s) for s in st.secrets()[1:])
    except ValueError as e:
        raise UsageError("cannot provision %s: %s" % (args.image, e))
    except OSError as e:
        raise UsageError("cannot write %s: %s" % (args.image, e))
    emu.backing.flush()
    print("%s: secret %s %s" % (args.image, fp, what))
    if emu.encrypted:
        print("note: this image is encrypted under the emulator's device key: it is for the emulator and virtual board, not for esptool")
    else:
        print("flash it at the qcd partition's offset: esptool write-flash OFFSET %s  (add --encrypt for a partition flagged encrypted)" % args.image)
    return 0


def fmt_ip(b):
    import socket

    return socket.inet_ntop(socket.AF_INET if len(b) == 4 else socket.AF_INET6, bytes(b))


def cmd_inspect(args):
    emu, st = mount_image(args.image)
    status = st.status()
    blocks = []
    for b in range(st.blocks):
        state, seq, est, used = st.block_info(b)
        blocks.append({"block": b, "state": state, "head": b == st.log.head, "seq": seq if seq >= 0 else None,
                       "erase_estimate": est if est >= 0 else None, "emulator_erases": emu.erase_counts[b] if emu.meta_from_sidecar else None,
                       "bytes_used": used if state == qstore.S_LIVE else None})
    children = sorted(st.children())
    if args.json:
        import json

        out = {
            "image": args.image, "blocks": st.blocks, "encrypted": emu.encrypted, "sidecar": emu.meta_from_sidecar,
            "secrets": status["generations"], "boot_count": st.boot_count,
            "child_map": [{"spi": "%08x" % spi, "spi_i": e[0].hex(), "spi_r": e[1].hex(), "initiator": e[2], "peer": fmt_ip(e[3])} for spi, e in children],
            "child_cap": status["child_cap"], "ike_sas": status["ike_sas"],
            "block_state": blocks, "damage": [damage_text(d) for d in status["damage"]],
            "damage_codes": [list(d) for d in status["damage"]], "damage_count": status["damage_count"],
            "mount_read_bytes": status["mount_read_bytes"],
        }
        print(json.dumps(out, indent=1))
    else:
        mode = "encrypted (emulator sidecar)" if emu.encrypted else ("plain (emulator sidecar)" if emu.meta_from_sidecar else "raw dump, read as plain flash")
        print("image: %s, %d blocks (%d KiB), %s" % (args.image, st.blocks, st.blocks * 4, mode))
        print("secrets (fingerprint: first 8 bytes of SHA-256; current first): %s" % (", ".join(status["generations"]) or "none"))
        print("boot count: %d" % st.boot_count)
        print("child SPI map: %d entries (cap %d) on %d IKE SAs" % (len(children), status["child_cap"], status["ike_sas"]))
        for spi, e in children:
            print("  %08x -> IKE SA %s/%s, we are %s, peer %s" % (spi, e[0].hex(), e[1].hex(), "initiator" if e[2] else "responder", fmt_ip(e[3])))
        print("blocks:")
        for b in range(st.blocks):
            extra = " (emulator counted %d)" % emu.erase_counts[b] if emu.meta_from_sidecar else ""
            print("  %d: %s%s" % (b, status["block_state"][b], extra))
        print("damage: %s" % ("none" if not status["damage"] else ""))
        for d in status["damage"]:
            print("  " + damage_text(d))
        if status["damage_more"]:
            print("  ... and %d more" % status["damage_more"])
    if not st.secrets():
        print("qcdtool: %s holds no QCD secret: %s" % (args.image, why_empty(st)), file=sys.stderr)
        return 1
    return 0


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2."""

    def error(self, message):
        print("qcdtool: %s (see qcdtool %s--help)" % (message, "" if self.prog == "qcdtool" else self.prog.split()[-1] + " "), file=sys.stderr)
        sys.exit(2)


def build_parser():
    p = Parser(prog="qcdtool", description="Check on a host what a QCD device will say (RFC 6290).")
    need.version_action(p, "qcdtool")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True

    def key_opts(sp):
        sp.add_argument("--secret-file", metavar="F", help="file holding the 32-byte secret as raw bytes")
        sp.add_argument("--image", metavar="IMAGE", help="take the secret(s) (and the Child SPI map) from a qcd partition image")

    t = sub.add_parser("token", help="print the token for an IKE SA, one line per secret held")
    key_opts(t)
    t.add_argument("--spi-i", required=True, metavar="HEX", help="initiator SPI, 8 bytes")
    t.add_argument("--spi-r", required=True, metavar="HEX", help="responder SPI, 8 bytes")
    t.add_argument("--peer", metavar="ADDR", help="taker address: RFC 6290 §5.2 style token")
    t.set_defaults(func=cmd_token)

    r = sub.add_parser("respond", help="print the unprotected answer to a received datagram")
    key_opts(r)
    r.add_argument("--from", dest="source", required=True, metavar="ADDR:PORT", help="where the datagram came from")
    r.add_argument("--style", choices=("5.1", "5.2"), default="5.1", help="token style (default 5.1)")
    r.add_argument("--protocol-id", type=int, default=1, choices=range(256), metavar="N",
                   help="Protocol ID in N(QCD) (default 1)")
    r.add_argument("datagram", metavar="HEX", help="the datagram as seen on UDP 500 or 4500")
    r.set_defaults(func=cmd_respond)

    d = sub.add_parser("decode", help="print an IKE datagram's header and payloads")
    d.add_argument("datagram", metavar="HEX")
    d.set_defaults(func=cmd_decode)

    im = sub.add_parser("image", help="make a qcd partition image")
    isub = im.add_subparsers(dest="image_cmd", metavar="new")
    isub.required = True
    n = isub.add_parser("new", help="write an erased partition image (and its emulator sidecar)")
    n.add_argument("image", metavar="IMAGE")
    n.add_argument("--blocks", type=int, default=16, metavar="N", help="4 KiB blocks (default 16: 64 KiB)")
    n.add_argument("--encrypted", action="store_true", help="emulate a partition flagged encrypted under flash encryption")
    n.add_argument("--force", action="store_true", help="overwrite IMAGE if it exists")
    n.set_defaults(func=cmd_image_new)

    pv = sub.add_parser("provision", help="write a given secret into a partition image (RFC 6290 §6 backup gateways)")
    pv.add_argument("image", metavar="IMAGE")
    pv.add_argument("--secret-file", required=True, metavar="F", help="file holding the 32-byte secret as raw bytes")
    pv.set_defaults(func=cmd_provision)

    ins = sub.add_parser("inspect", help="decode a partition image or raw dump: secrets (fingerprints), map, blocks, damage")
    ins.add_argument("image", metavar="IMAGE")
    ins.add_argument("--json", action="store_true", help="print JSON")
    ins.set_defaults(func=cmd_inspect)
    return p


def main(argv=None):
    p = build_parser()
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    try:
        return args.func(args)
    except UsageError as e:
        print("qcdtool: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

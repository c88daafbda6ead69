# Section: the ESP32-C3 row of issue 10, as instruction counts: one side of
# an IKE_SA_INIT + IKE_AUTH handshake (X25519 and MODP-2048), where its
# instructions go, and one QCD token against micropython-lib's hmac, on
# MicroPython's bare-metal RISC-V port under QEMU (bench/c3_bench.py says
# how, and how to build the firmware).
#
# C3_FIRMWARE=/path/to/firmware.elf (`python bench/c3_bench.py build SRC OUT`
# makes it from a MicroPython v1.27 source tree) is needed; without it the
# section says so and measures nothing (CI has no MicroPython source).
import datetime
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
MHZ = 160  # the ESP32-C3's top clock
TARGET_S = 0.3  # issue 10: one side of a handshake
TOKEN_TARGET = 0.25  # issue 10 §5: a token at most 1/4 of a bare hmac


def load_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("c3_bench", os.path.join(HERE, "c3_bench.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def n(v):
    return "{:,}".format(int(float(v)))


def sec(v):
    return "%.2f s" % (int(v) / (MHZ * 1e6))


def run(bench):
    head = ["## ESP32-C3: instructions for a handshake and a token (RISC-V MicroPython under QEMU)", ""]
    elf = os.environ.get("C3_FIRMWARE")
    if not elf:
        return "\n".join(head + [
            "not measured: no RISC-V MicroPython build (set C3_FIRMWARE=/path/to/firmware.elf, MicroPython's"
            " ports/qemu for BOARD=VIRT_RV32 with the device set frozen in: `python bench/c3_bench.py build SRC OUT`"
            " builds it from a MicroPython v1.27 source tree). The figures of record are in the last run that had one.", ""])
    if shutil.which("qemu-system-riscv32") is None:
        return "\n".join(head + ["not measured: qemu-system-riscv32 is not installed (Debian: qemu-system-misc).", ""])
    tool = load_tool()
    bench.log("c3: %s under QEMU, counting instructions" % elf)
    r = bench.results(tool.run(elf))
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    L = head + [
        "Run on %s UTC. " % when +
        "`C3_FIRMWARE=.../%s make bench ONLY=c3`, i.e. `python bench/c3_bench.py run .../%s` (bench/c3_device.py on the board): MicroPython %s,"
        " ports/qemu BOARD=VIRT_RV32 (%s), -O2 and computed goto as the esp32 port builds, the device set frozen"
        " (bench/c3_manifest.py), a %s B heap; %s with `-icount shift=0`. Counted: the guest's `instret`, checked"
        " first against a loop of known length (%s instructions for 10,000,000 iterations of two: %s per instruction)."
        % (os.path.basename(elf), os.path.basename(elf), r["micropython"], r["machine"].replace("_", " "), n(r["heap_bytes"]), r["qemu"].replace("_", " "),
           n(r["calib_10000000"].split()[0]), r["calib_10000000"].split()[1]),
        "",
        "**Times assume one instruction per cycle at %d MHz.** The C3 does not reach that (code runs from flash"
        " through a cache; loads, branches taken and divisions take more than one cycle), so they are lower bounds"
        " of the device's time; the instruction counts are what was measured. AES and SHA here are axTLS's and"
        " crypto-algorithms' C code; on a C3 they are mbedTLS on its accelerators (they are under 1%% of a handshake"
        " either way). The engines' random octets come from a SHA-256 counter (this port has no os.urandom): the"
        " *rng* column."
        % MHZ,
        "",
        "Two in-memory engines (bench/engine_pair.py's Pair, frozen in with the device set: an initiator and a"
        " responder, as bench/ike_bench.py pairs them): each call into one engine is counted for that side; median of 3 handshakes, each with other keys and nonces (a MODP"
        " pow() costs more or less with its exponent: runs %s), after a first one (which also imports the exchange"
        " modules the engine loads on first use; frozen, so no compilation)." % "; ".join(
            "%s %s" % (lab, " / ".join(n(x) for x in r["%s_runs" % k].split(","))) for lab, k in (("X25519 initiator", "x25519_i"), ("MODP-2048 initiator", "modp2048_i"))),
        "",
        "Each handshake was run twice: with no key pair ready, what the first handshake after boot meets (the"
        " device initiates before its loop was ever idle, so it makes its key pair then), and with the key pairs"
        " made ahead, as ike.device's loop and ike.aio's task make them when nothing is due (ike.crypto.prepare, one"
        " slice per call, until each engine has one; not counted in the handshake, reported below). Any later"
        " handshake, reconnection or IKE SA rekey of a device that was idle for a moment is the second kind.",
        "",
        "| one side of IKE_SA_INIT + IKE_AUTH | key pair made ahead: the handshake (median of 3) | at %d MHz, 1 IPC | no key pair ready (median of 3) | at %d MHz, 1 IPC | first handshake after boot | target |" % (MHZ, MHZ),
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, label in (("x25519", "X25519 (group 31, proposed first)"), ("modp2048", "MODP-2048 (group 14, the fallback)")):
        for side, who in (("i", "initiator (the device)"), ("r", "responder")):
            v = r["%s_ahead_%s" % (name, side)]
            cold = r["%s_%s" % (name, side)]
            t = int(v) / (MHZ * 1e6)
            tc = int(cold) / (MHZ * 1e6)
            verdict = "at most %.1f s: %s; no key pair ready: %s" % (
                TARGET_S, "met" if t <= TARGET_S else "**missed, %.1fx**" % (t / TARGET_S),
                "met" if tc <= TARGET_S else "**missed, %.2fx**" % (tc / TARGET_S))
            L.append("| %s, %s | %s | %s | %s | %s | %s | %s |" % (label, who, n(v), sec(v), n(cold), sec(cold), n(r["%s_first_%s" % (name, side)]), verdict))
    pair, smax, nsl = r["x25519_ahead_pair"], r["x25519_ahead_slice_max"], r["x25519_ahead_slices_per_pair"]
    L += ["", "Made ahead, in idle time: one X25519 key pair costs %s instructions (%.0f ms at %d MHz, 1 IPC; median of"
          " the runs above), in %s slices (ike.crypto.prepare calls) of at most %s instructions (%.1f ms): the longest a"
          " datagram or another asyncio task waits for idle work. The loops do it only when nothing is due for 20 ms"
          " and the last datagram is 200 ms old. MODP-2048 pairs are not made ahead (%s)." % (
              n(pair), int(pair) / (MHZ * 1e3), MHZ, nsl, n(smax), int(smax) / (MHZ * 1e3),
              "none made" if int(r["modp2048_ahead_pair"]) == 0 else n(r["modp2048_ahead_pair"]))]
    splits = {}
    for name in ("x25519", "modp2048", "x25519_ahead"):
        for side in ("i", "r"):
            kv = dict((k, int(v)) for k, v in (x.split("=") for x in r["split_%s_%s" % (name, side)].split()))
            kv["dh"] = kv["dh_pair"] + kv["dh_shared"]
            splits[name, side] = kv
    # the wrapped handshake against the same one (same keys and nonces)
    # unwrapped: the wrappers' cost plus collections falling elsewhere
    extra = max(abs(splits[k]["total"] / float(r["%s_%s_seed1" % k]) - 1) for k in splits if k[0] != "x25519_ahead")
    L += ["", "Where the instructions go: the handshake of the first measured run again (same keys and nonces), with"
          " these functions wrapped and each charged to the outermost wrapped call it runs in: *dh*: ike.dh key pair"
          " and shared secret (ike.x25519 or pow()); *keymat*: SKEYSEED, prf+, the AUTH values, Child SA keys"
          " (ike.keymat, its HMAC included); *enc/integ*: AES-CBC and the ICVs of the SK payloads (ike.crypto,"
          " ikebase.hmac256 outside keymat); *rng*: the random octets; *rest*: everything else (parsing, building,"
          " the engine, state). %s wrapped calls a handshake; the wrapped totals are within %.1f%% of the unwrapped"
          " run with the same keys (garbage collections, which run where the heap fills, vary by that much too)."
          % (r["split_x25519_wrapped_calls"], 100 * extra), "",
          "| side | dh | keymat | enc/integ | rng | rest | total |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, label in (("x25519_ahead", "X25519, key pair made ahead"), ("x25519", "X25519, no key pair ready"), ("modp2048", "MODP-2048")):
        for side, who in (("i", "initiator"), ("r", "responder")):
            kv = splits[name, side]
            tot = kv["total"]
            cells = ["%s (%.1f%%)" % (n(kv[c]), 100.0 * int(kv[c]) / tot) for c in ("dh", "keymat", "enc_integ", "rng", "rest")]
            L.append("| %s, %s | %s | %s |" % (label, who, " | ".join(cells), n(tot)))
    L += ["", "Of D-H, the key pair / the shared secret: %s." % "; ".join(
        "%s %s: %s / %s" % (lab, who, n(splits[g, side]["dh_pair"]), n(splits[g, side]["dh_shared"]))
        for g, lab in (("x25519", "X25519"), ("modp2048", "MODP-2048")) for side, who in (("i", "initiator"), ("r", "responder")))]
    # what the target leaves for D-H: 0.3 s at 160 MHz and 1 IPC, less
    # what the side spends outside D-H
    budget = TARGET_S * MHZ * 1e6
    worst = max(("i", "r"), key=lambda side: splits["x25519", side]["total"])
    k = splits["x25519", worst]
    non_dh = k["total"] - k["dh"]
    L += ["", "Outside D-H a side costs %s instructions (%.0f ms at %d MHz, 1 IPC). The target, %s instructions, leaves"
          " %s for D-H: with the key pair made ahead that is the shared secret alone, %s here (taking the ready pair:"
          " %s); with none ready, the key pair and the shared secret (the %s here), %s (%s + %s)."
          % (n(non_dh), non_dh / (MHZ * 1e3), MHZ, n(budget), n(budget - non_dh),
             n(max(splits["x25519_ahead", s]["dh_shared"] for s in ("i", "r"))),
             n(max(splits["x25519_ahead", s]["dh_pair"] for s in ("i", "r"))),
             "initiator" if worst == "i" else "responder",
             n(k["dh"]), n(k["dh_pair"]), n(k["dh_shared"]))]
    L += ["", "The same handshakes with the early collection firmware/qcdapp.py sets (`gc.threshold`, a quarter of the"
          " heap free at the start; ike.x25519 turns it off while it computes), initiator / responder: %s." % "; ".join(
              "%s: key pair made ahead %s / %s, none ready %s / %s" % (lab, n(r["%s_ahead_thr_i" % g]), n(r["%s_ahead_thr_r" % g]),
                                                                      n(r["%s_thr_i" % g]), n(r["%s_thr_r" % g]))
              for g, lab in (("x25519", "X25519"), ("modp2048", "MODP-2048")))]
    byfree = [x.split(":") for x in r["x25519_by_free_heap"].split(",")]
    L += ["", "The shared secret depends on the heap left free, because its ladder makes about 1.3 MB of short-lived"
          " integers and each collection marks the live heap and sweeps the whole %s B heap: one X25519 shared secret"
          " alone (`x25519.x25519`) with %s (a ballast of live bytearrays taking the rest). MODP's pow() frees its own"
          " temporaries and makes almost no garbage. A board whose heap is mostly taken by the app (the .mpy figures"
          " of the Memory section) pays correspondingly more." % (
              n(r["heap_bytes"]), ", ".join("%s KB free: %s instructions" % (n(int(f) // 1024), n(v)) for f, v in byfree))]
    gcs = []
    for g, lab in (("x25519", "X25519"), ("modp2048", "MODP-2048")):
        off = [r.get("%s_nogc_%s" % (g, s)) for s in ("i", "r")]
        if "None" in off:
            gcs.append("%s: the heap ran out, so the collector must run" % lab)
        else:
            on = [r["%s_%s_seed1" % (g, s)] for s in ("i", "r")]
            gcs.append("%s: %s / %s instructions (collector on: %s / %s)" % (lab, n(off[0]), n(off[1]), n(on[0]), n(on[1])))
    L += ["", "The same handshake with the collector off (`gc.disable()`), initiator / responder: %s." % "; ".join(gcs)]
    tok, first, bare = r["token_instructions"], r["token_first_instructions"], r["hmac_instructions"]
    L += ["", "| one QCD token (`qcd.tokens.make_token`, RFC 6290 §5.1) | instructions | at %d MHz, 1 IPC | target |" % MHZ, "|---|---:|---:|---|",
          "| token, secret's padded keys cached (every token after the first) | %s | %.0f µs | |" % (n(tok), float(tok) / MHZ),
          "| first token of a secret (builds the padded keys) | %s | %.0f µs | |" % (n(first), float(first) / MHZ)]
    if bare != "None":
        ratio = float(r["token_over_hmac"])
        L.append("| bare micropython-lib hmac, `hmac.new(secret, spi_i + spi_r, hashlib.sha256).digest()` (frozen) | %s | %.0f µs | |" % (n(bare), float(bare) / MHZ))
        L.append("| token / bare hmac, side by side | %.3f | | at most %.2f: %s |" % (ratio, TOKEN_TARGET, "met" if ratio <= TOKEN_TARGET else "**missed**"))
    L += ["", "QEMU ran the whole script in %s s of wall time." % r["wall_s"]]
    return "\n".join(L)

# Section: the data plane (issue 12): datagrams per second and the cost per
# datagram through the tunnel, on CPython and the WebAssembly MicroPython,
# bytes per open tunnel socket, and the longest time the device loop keeps
# other asyncio tasks waiting during a handshake.
import os

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "tunnel_bench.py")
AIO = os.path.join(HERE, "tunnel_aio_bench.py")
VBOARD = os.path.join(HERE, "tunnel_vboard_bench.py")


def run(bench):
    bench.log("tunnel: CPython")
    cp = bench.cpython(SCRIPT)
    bench.log("tunnel: MicroPython (WebAssembly)")
    mp = bench.micropython(SCRIPT, paths=("lib:/lib", "bench/engine_pair.py:/lib/engine_pair.py"))
    groups = [int(g) for g in cp["groups"].split(",")]
    aio = {}
    vb = {}
    for g in groups:
        bench.log("tunnel: asyncio on CPython, group %d" % g)
        aio[g] = bench.cpython(AIO, g)
        bench.log("tunnel: asyncio on the virtual board (MicroPython), group %d" % g)
        vb[g] = bench.cpython(VBOARD, g)
    L = []
    L.append("## Data plane: datagrams through the tunnel, sockets, asyncio")
    L.append("")
    L.append("Run alone on %s UTC with `make bench ONLY=tunnel`." % __import__("datetime").datetime.now(__import__("datetime").timezone.utc).strftime("%Y-%m-%d %H:%M"))
    L.append("`python3 bench/tunnel_bench.py` and `node host/qcdhost/emu/wasm/run.mjs --path lib:/lib --path bench/engine_pair.py:/lib/engine_pair.py bench/tunnel_bench.py`: two engines in")
    L.append("memory with a Tunnel each (ike.tunnel), %s / %s datagrams per figure (CPython / MicroPython), no sockets." % (cp["n"], mp["n"]))
    L.append("*send* is `sock.sendto()` on the device: inner IPv4/UDP headers, RFC 768 checksum, selector checks, ESP; *ESP* is")
    L.append("`esp.seal_into` alone (padding, AES-CBC-256, HMAC-SHA-256-128 ICV); *echo* is a datagram to the gateway's socket,")
    L.append("echoed back and received (two seals, two opens). On the WebAssembly port AES runs in Node through run.mjs's")
    L.append("hex-string bridge (an ESP32 has cryptolib in C), so its ESP figures are the bridge's as much as ours.")
    L.append("*ESP* is measured twice, alternating in the same run: with the integrity key as key bytes (HMAC-SHA-256's two")
    L.append("padded key blocks built for every packet) and with one `crypto.hmac_key` kept for the SA.")
    L.append("")
    L.append("| figure | CPython | MicroPython (WebAssembly) |")
    L.append("|---|---:|---:|")
    for size in ("64", "1394"):
        L.append("| send, %s-octet payload | %s µs | %s µs |" % (size, cp["send_us_" + size], mp["send_us_" + size]))
        L.append("| ESP alone (encrypt + ICV), integrity key as bytes | %s µs | %s µs |" % (cp["esp_us_" + size], mp["esp_us_" + size]))
        L.append("| ESP alone, one HMAC key kept for the SA | %s µs | %s µs |" % (cp["esp_key_us_" + size], mp["esp_key_us_" + size]))
        L.append("| echo round trip, %s octets | %s µs (%s /s) | %s µs (%s /s) |" % (size, cp["echo_us_" + size], cp["echo_per_s_" + size], mp["echo_us_" + size], mp["echo_per_s_" + size]))
        L.append("| heap allocated per send, %s octets (ESP alone: key as bytes; the SA's HMAC key) | – | %s B (%s B; %s B) |" % (size, mp["alloc_per_send_" + size], mp["alloc_per_esp_" + size], mp["alloc_per_esp_key_" + size]))
    L.append("| heap per open tunnel socket | %s B | %s B |" % (cp["per_socket_bytes"], mp["per_socket_bytes"]))
    L.append("| heap per Tunnel (its preallocated packet buffer included) | %s B | %s B |" % (cp["per_tunnel_bytes"], mp["per_tunnel_bytes"]))
    L.append("| largest UDP payload (MTU 1500) | %s B | %s B |" % (cp["max_payload"], mp["max_payload"]))
    L.append("| heap after `import ike.engine`, from .py (what a device loads anyway) | – | %s B |" % mp["import_bytes_engine"])
    for m in ("tunnel", "config_payload"):
        L.append("| heap `import ike.%s` adds, from .py (loaded only when used) | – | %s B |" % (m, mp["import_bytes_" + m]))
    for g in groups:
        for side in ("device", "gateway"):
            k = "handshake_longest_step_ms_%s_group%d" % (side, g)
            L.append("| longest single engine step in a handshake, D-H group %d, %s side | %s ms | %s ms |" % (g, side, cp[k], mp[k]))
    L.append("")
    L.append("The engine runs between two awaits of ike.aio's task, so its longest step is the longest an asyncio task beside it")
    L.append("waits: the step that computes a D-H exponentiation (two on the responder). \"Allocated per send\" is")
    L.append("`gc.mem_alloc()` growth (no collection runs inside a step on this port): the checksum's big integer, the crypto")
    L.append("adapter's copies and results, and the datagram; with the bridge's hex strings on this port.")
    L.append("")
    L.append("`python3 bench/tunnel_aio_bench.py GROUP` (CPython) and `python3 bench/tunnel_vboard_bench.py GROUP` (bench/tunnel_mpy_aio.py")
    L.append("as main.py of the virtual board, `vboard --net --headless`: the WebAssembly MicroPython's asyncio and the")
    L.append("board's UDP sockets): the device loop (ike.aio.serve) as an asyncio task with real UDP sockets against qcd-peer")
    L.append("(`--echo 7`), a ticker task that sleeps 1 ms and records how late it woke, and readings sent one at a time, each")
    L.append("awaiting its echo (`aio.recvfrom`).")
    L.append("")
    L.append("| figure (asyncio, real sockets) | " + " | ".join("CPython, group %d | MicroPython (virtual board), group %d" % (g, g) for g in groups) + " |")
    L.append("|---|" + "---:|---:|" * len(groups))
    L.append("| handshake (start to tunnel address) | " + " | ".join("%s ms | %s ms" % (aio[g]["handshake_ms"], vb[g]["handshake_ms"]) for g in groups) + " |")
    L.append("| longest block of the ticker during the handshake | " + " | ".join("%s ms | %s ms" % (aio[g]["longest_block_ms_handshake"], vb[g]["longest_block_ms_handshake"]) for g in groups) + " |")
    L.append("| readings echoed through the tunnel (one at a time) | " + " | ".join("%s /s (%s of 200) | %s /s (%s)" % (aio[g]["readings_per_s"], aio[g]["readings_answered"], vb[g]["readings_per_s"], vb[g]["readings_answered"]) for g in groups) + " |")
    L.append("| longest block of the ticker during the readings | " + " | ".join("%s ms | %s ms" % (aio[g]["longest_block_ms_readings"], vb[g]["longest_block_ms_readings"]) for g in groups) + " |")
    L.append("")
    L.append("On MicroPython the loop polls (ike.aio: every %s ms when idle, every 1 ms for 200 ms after traffic); the virtual" % vb[groups[0]]["poll_ms"])
    L.append("board's sockets and AES cross into Node for every call, which its readings rate includes.")
    L.append("")
    L.append("On an ESP32 the D-H step is the figure to plan for: neither MicroPython's mpz pow() (MODP-2048, a 256-bit")
    L.append("exponent, ike.dh) nor the X25519 ladder (ike.x25519, one call) yields, so a task beside the loop waits for one")
    L.append("of them at a time: twice per handshake on the device (its KE, then the shared secret), with the engine's other")
    L.append("work in that step. The first figures on this machine can include a module's first import.")
    return "\n".join(L)

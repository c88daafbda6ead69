# The data plane (ike.tunnel) on CPython and on MicroPython, unchanged:
# datagrams per second through the tunnel, the cost per datagram of ESP
# (AES-CBC + HMAC-SHA-256-128 ICV) and of the rest (IPv4/UDP headers,
# checksums, selectors), bytes allocated per datagram, heap per open tunnel
# socket and per Tunnel, and the longest engine step during a handshake
# (what an asyncio task beside ike.aio waits at most, per DH group).
# Prints `RESULT name value` lines for bench/section_tunnel.py.
#
#   python3 bench/tunnel_bench.py                           (qcd installed: make venv)
#   node host/qcdhost/emu/wasm/run.mjs --path lib:/lib --path bench/engine_pair.py:/lib/engine_pair.py bench/tunnel_bench.py
#
# Two engines in memory (device and gateway, a Tunnel each), no sockets:
# what is measured is lib/ike's own work. On the WebAssembly port AES comes
# from Node's crypto through host/qcdhost/emu/wasm/run.mjs's jscrypto bridge (hex
# strings across the JS proxy), where an ESP32 has cryptolib in C: its ESP
# figure there is the bridge's as much as ours; the "rest" is ours alone.
import gc

from engine_pair import MICRO, Pair, clock_us, dev_config, gw_config, heap, install_crypto, result, run_steps, since_us

N = 200 if MICRO else 2000  # datagrams per measurement
S = {}
DEV = dev_config(nat_t="force", tunnel={"inner_addr": "10.2.0.5"})
GW = gw_config(tunnel={"inner_addr": "10.1.0.1"})


def allocated():
    """Bytes allocated so far (MicroPython: no collection runs inside a step
    on the WebAssembly port, so mem_alloc only grows; CPython: tracemalloc's
    peak is not it, so this is only used on MicroPython)."""
    return gc.mem_alloc() if MICRO else 0


def handshake(group):
    dev = dict(DEV, dh_groups=[group])
    gw = dict(GW, dh_groups=[group])
    return Pair(dev, gw).up()


def prepare():
    from ike import dh
    from ike.tunnel import Tunnel

    install_crypto()
    groups = [g for g in (14, 31) if g in dh.SUPPORTED]
    for g in groups:
        ln = handshake(g)
        for side in ("device", "gateway"):
            result("handshake_longest_step_ms_%s_group%d" % (side, g), "%.1f" % (ln.longest[side] / 1000))
    result("groups", ",".join(str(g) for g in groups))
    ln = Pair(DEV, GW)
    S["dt"] = Tunnel(ln.dev)
    S["gt"] = Tunnel(ln.gw)
    ln.up()
    S["ln"] = ln
    S["echo"] = S["gt"].socket(7)
    S["sock"] = S["dt"].socket(5000)


def collect():
    gc.collect()


def send_only(size):
    """Device side only: build + ESP for N datagrams of `size` octets."""

    def step():
        ln, s = S["ln"], S["sock"]
        data = b"r" * size
        dst = ("10.1.0.1", 7)
        a0 = allocated()
        t0 = clock_us()
        for _ in range(N):
            s.sendto(data, dst)
            ln.dev._out.clear()
        us = since_us(t0)
        a1 = allocated()
        result("send_us_%d" % size, "%.1f" % (us / N))
        if MICRO:
            result("alloc_per_send_%d" % size, "%.0f" % ((a1 - a0) / N))

    return step


def esp_only(size):
    """The ESP part alone (esp.seal_into: padding, AES-CBC, ICV) on an inner
    packet of size + 28 octets already in the tunnel's buffer, side by side
    with the Child SA's integrity key as bytes (HMAC pads built for every
    packet: esp_us_*) and as one crypto.hmac_key kept for the SA
    (esp_key_us_*); best of three rounds each, alternating."""

    def step():
        from ike import crypto, esp

        dt = S["dt"]
        child = S["ln"].dev.sas[list(S["ln"].dev.sas)[0]].children[0]
        iv = bytes(16)
        n = size + 28
        keys = (("esp", child.keys[3]), ("esp_key", crypto.hmac_key(child.keys[3])))
        reps = 5 * N if MICRO else N  # the port's clock ticks in ms: more packets per reading
        best = {}
        for _ in range(3):
            for name, integ in keys:
                a0 = allocated()
                t0 = clock_us()
                for i in range(reps):
                    esp.seal_into(dt._tx, n, child.spi_out, 1, child.keys[2], integ, 4, iv)
                us = since_us(t0) / reps
                if name not in best or us < best[name][0]:
                    best[name] = (us, (allocated() - a0) / reps)
        for name, _k in keys:
            result("%s_us_%d" % (name, size), "%.1f" % best[name][0])
            if MICRO:
                result("alloc_per_%s_%d" % (name, size), "%.0f" % best[name][1])

    return step


def round_trip(size):
    """Device -> gateway -> device: one datagram out, delivered, echoed,
    delivered back (four ESP operations: seal, open, seal, open)."""

    def step():
        ln, s, e = S["ln"], S["sock"], S["echo"]
        data = b"r" * size
        t0 = clock_us()
        got = 0
        for _ in range(N):
            s.sendto(data, ("10.1.0.1", 7))
            for pkt, to, natt in ln.dev.take_datagrams():
                ln.gw.receive(pkt, ("192.0.2.2", 4500), True, 0)
            r = e.recvfrom()
            e.sendto(r[0], r[1])
            for pkt, to, natt in ln.gw.take_datagrams():
                ln.dev.receive(pkt, ("192.0.2.1", 4500), True, 0)
            if s.recvfrom() is not None:
                got += 1
        us = since_us(t0)
        result("echo_us_%d" % size, "%.1f" % (us / N))
        result("echo_per_s_%d" % size, "%.0f" % (N * 1e6 / us))
        result("echo_lost_%d" % size, N - got)

    return step


def sockets_step():
    S["socks"] = [S["dt"].socket(0) for _ in range(20)]


def tunnel_step():
    from ike.tunnel import Tunnel

    S["t2"] = Tunnel(S["ln"].dev)  # replaces the engine's tunnel (fine here: last)


def mark(name):
    def step():
        S[name] = heap()

    return step


def report():
    for name, m in IMPORTS:
        result("import_bytes_" + name, S[name + "1"] - S[name + "0"])
    result("per_socket_bytes", "%.0f" % ((S["after_socks"] - S["before_socks"]) / 20))
    result("per_tunnel_bytes", S["after_tunnel"] - S["before_tunnel"])
    result("max_payload", S["dt"].max_payload)
    result("n", N)
    result("internal_errors", S["ln"].dev.counters["internal_errors"] + S["ln"].gw.counters["internal_errors"])


def import_step(name):
    def step():
        __import__(name)

    return step


# Heap the modules take once imported, MicroPython only (compiled from .py
# on this port; frozen .mpy on a firmware build keeps the code in flash):
# the engine first, then each data-plane module on top. ike.aio needs
# sockets, which run.mjs's port has not (the virtual board has).
IMPORTS = (("engine", "ike.engine"), ("tunnel", "ike.tunnel"), ("config_payload", "ike.config_payload")) if MICRO else ()
steps = []
for _n, _m in IMPORTS:
    steps += [mark(_n + "0"), import_step(_m), collect, mark(_n + "1")]
steps += [prepare, collect]
for size in (64, 1394):
    steps += [send_only(size), collect, esp_only(size), collect, round_trip(size), collect]
steps += [mark("before_socks"), sockets_step, collect, mark("after_socks"), mark("before_tunnel"), tunnel_step, collect, mark("after_tunnel"), report]

run_steps(steps, globals())

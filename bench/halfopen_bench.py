# Heap per half-open IKE SA (responder, IKE_SA_INIT answered, IKE_AUTH not
# yet received) and what the caps bound it to, unchanged on CPython and on
# MicroPython. Prints `RESULT name value` lines for bench/section_halfopen.py.
#
#   python3 bench/halfopen_bench.py                          (qcd installed: make venv)
#   node host/qcdhost/emu/wasm/run.mjs --path lib:/lib --path bench/engine_pair.py:/lib/engine_pair.py bench/halfopen_bench.py
#
# The requests are one initiator's IKE_SA_INIT (X25519, the default group,
# and MODP-2048, measured apart) with the initiator SPI changed, as an attacker replaying a captured request from addresses it
# owns would send them. cookie_threshold is set out of the way: a COOKIE
# round trip changes nothing in what the responder holds afterwards.
# MicroPython: gc.mem_alloc() after a collection at the top level (the
# WebAssembly port collects only there: run.mjs's _mpwasm_steps). CPython:
# tracemalloc, current traced bytes.
import gc

from engine_pair import MICRO, dev_config, gw_config, heap, install_crypto, result, run_steps

N = 10  # half-open SAs measured
FLOOD = 100  # requests from one address for the cap figure
S = {}


def responder(**kw):
    # cookie_threshold out of the way (see above)
    return gw_config(cookie_threshold=1000000, **kw)


def request(groups):
    from ike.config import Config
    from ike.engine import Engine

    a = Engine(Config(dev_config(dh_groups=groups)))
    a.initiate(0)
    return a.take_datagrams()[0][0]


def prepare():
    from ike.config import Config
    from ike.engine import Engine

    install_crypto()
    S["reqs"] = {"x25519": request([31]), "modp2048": request([14])}
    S["req"] = S["reqs"]["x25519"]
    S["Engine"], S["Config"] = Engine, Config
    S["spis"] = [(0x2000 + n).to_bytes(8, "big") for n in range(2 * N + FLOOD)]
    S["srcs"] = [("198.51.100.%d" % (n + 1), 500) for n in range(N)]
    big_caps()


def big_caps():
    S["eng"] = S["Engine"](S["Config"](responder(half_open_max=1000, half_open_per_source=1000)))


def send(eng, k, src):
    eng.receive(S["spis"][k] + S["req"][8:], src, False, 0)
    eng.take_datagrams()
    eng.take_events()


def collect():
    gc.collect()  # on the WebAssembly port: runs before the next step


def mark(name):
    def step():
        S[name] = heap()

    return step


def fill():
    for k in range(N):
        send(S["eng"], k, S["srcs"][k])


def modp():
    S["req"] = S["reqs"]["modp2048"]
    big_caps()


def fill_modp():
    for k in range(N):
        send(S["eng"], N + k, S["srcs"][k])


def default_group():
    S["req"] = S["reqs"]["x25519"]


def flood():
    # default caps; FLOOD requests from one address
    eng = S["eng"]
    for k in range(FLOOD):
        send(eng, 2 * N + k, ("198.51.100.200", 500))


def report():
    from ike import state

    eng = S["eng"]
    held = len([sa for sa in eng.sas.values() if sa.state == state.INIT_DONE])
    result("per_half_open_bytes", "%.0f" % ((S["filled"] - S["empty"]) / N))
    result("per_half_open_modp_bytes", "%.0f" % ((S["filled_modp"] - S["empty_modp"]) / N))
    result("n_measured", N)
    result("request_bytes", len(S["reqs"]["x25519"]))
    result("request_modp_bytes", len(S["reqs"]["modp2048"]))
    result("flood_requests", FLOOD)
    result("flood_held", held)
    result("flood_dropped", eng.counters["half_open_dropped"])
    result("flood_heap_bytes", S["flooded"] - S["empty_flood"])
    result("cap_global", eng.cfg.half_open_max)
    result("cap_per_source", eng.cfg.half_open_per_source)
    result("internal_errors", eng.counters["internal_errors"])


def empty_flood_engine():
    S["eng"] = S["Engine"](S["Config"](responder()))


steps = [prepare, collect, mark("empty"), fill, collect, mark("filled")]
steps += [modp, collect, mark("empty_modp"), fill_modp, collect, mark("filled_modp"), default_group]
steps += [empty_flood_engine, collect, mark("empty_flood"), flood, collect, mark("flooded"), report]
run_steps(steps, globals())

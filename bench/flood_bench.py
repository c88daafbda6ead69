# Unprotected answers under a flood (issue 13 §2): does the real gateway still
# get its answers while strangers send unknown-SA requests?
#
# Sans-I/O and simulated time: a rebooted device's QcdHook (maker) gets, for
# DURATION_S, the real gateway's liveness checks for its stale SAs (one every
# GW_PERIOD_MS, from the gateway's address) and FLOOD protected-looking
# requests a second for unknown SPIs from other addresses. Counted: the share
# of the gateway's checks answered (each answer is what lets the gateway
# delete its stale SA, RFC 6290 §4.5). Two makers side by side in one run:
#   lane    the gateway is known (it is in the persisted §8.2 map and is the
#           configured peer): it has its own lane in the rate limiter
#   single  the same maker with its rate limiter replaced by one bucket for
#           every source, as before issue 13 §2
# Both with the default rate limit (5 answers/s, burst 10, per lane).
#
#   python3 bench/flood_bench.py        prints RESULT lines
import struct

from qcd import wire
from qcd.hook import MAKER, QcdHook
from qcd.ratelimit import DEFAULT_BURST, DEFAULT_RATE, TokenBucket
from qcd.tokens import ip_bytes
from qcdhost.keys import MemoryKeys

GW = "192.0.2.1"
DURATION_S = 60
GW_PERIOD_MS = 1000
SECRET = bytes(range(32))


def request(spi_i, spi_r, msg_id):
    body = bytes(48)
    sk = struct.pack(">BBH", 0, 0, 4 + len(body)) + body
    return spi_i + spi_r + struct.pack(">BBBBII", wire.PT_SK, 0x20, wire.INFORMATIONAL, 0, msg_id, 28 + len(sk)) + sk


class OneBucket:
    """The rate limiter before issue 13 §2: one bucket, whoever asks."""

    def __init__(self):
        self.b = TokenBucket(DEFAULT_RATE, DEFAULT_BURST)

    def allow(self, now, known):
        return self.b.allow(now)


def device(lane):
    keys = MemoryKeys([SECRET])
    # The map persisted before the reboot names the gateway's SA.
    keys.child_put(0xC0FFEE01, b"D" * 8, b"G" * 8, True, ip_bytes(GW))
    h = QcdHook(MAKER, keys, gateways=[GW])
    if not lane:
        h.maker.bucket = OneBucket()
    return h


def run(lane, flood_per_s):
    h = device(lane)
    gw_sent = gw_answered = flood_answered = 0
    step = 1000.0 / flood_per_s if flood_per_s else None
    nxt_flood = 0.0
    k = 0
    for now in range(0, DURATION_S * 1000):
        if step is not None:
            while nxt_flood < now + 1:
                k += 1
                src = ("198.51.100.%d" % (1 + k % 250), 500)
                spi = struct.pack(">II", k, 7)
                if h.unknown_ike_spi(request(spi, spi[::-1], 1), src, now) is not None:
                    flood_answered += 1
                nxt_flood += step
        if now % GW_PERIOD_MS == 0:
            gw_sent += 1
            if h.unknown_ike_spi(request(b"D" * 8, b"G" * 8, gw_sent), (GW, 500), now) is not None:
                gw_answered += 1
    return gw_sent, gw_answered, flood_answered


def main():
    print("RESULT duration_s %d" % DURATION_S)
    for flood in (0, 10, 100, 1000):
        for lane in (True, False):
            sent, answered, fa = run(lane, flood)
            name = "%s_%d" % ("lane" if lane else "single", flood)
            print("RESULT %s_gw_share %.1f" % (name, 100.0 * answered / sent))
            print("RESULT %s_gw_sent %d" % (name, sent))
            print("RESULT %s_flood_answers_per_s %.1f" % (name, fa / DURATION_S))


main()

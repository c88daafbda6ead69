# A token bucket in front of the unprotected answers (RFC 6290 §9).
#
# An unprotected QCD answer costs the maker one HMAC per held secret and a
# datagram, for a request nobody authenticated; and every answer hands an
# attacker one more (SPI pair, token) sample. WireGuard puts a rate limiter in
# front of its unauthenticated path for the same reason (ratelimiter.c).
# Precedents for the caps: Rockhopper's defaults are 1000 unknown-SPI requests
# and 500 QCD answers per second; a microcontroller on a 100 KB heap and a
# radio wants far lower ones, so ours default to 5 answers a second with a
# burst of 10 (a gateway that just noticed a reboot sends one liveness check or
# a few ESP packets per SA: 10 covers a handful of SAs at once).
#
# Time is the caller's: `now` in integer milliseconds from a monotonic clock
# (sans-I/O; nothing here reads a clock).

DEFAULT_RATE = 5  # answers per second
DEFAULT_BURST = 10  # answers
#
# One bucket for everyone let strangers starve the gateway that matters: 10
# unknown-SA requests a second from elsewhere left half of the real gateway's
# liveness checks unanswered, 100 a second left 7% (issue 13 §2). Lanes gives
# the gateways the maker knows (the peers of its §8.2 map and the configured
# peer) a bucket of their own that traffic from other addresses never draws
# on. A source address is not authenticated: whoever spoofs a known gateway's
# address draws on its lane, and the answers go to that gateway.


class TokenBucket:
    __slots__ = ("rate", "burst", "_level", "_last")

    def __init__(self, rate=DEFAULT_RATE, burst=DEFAULT_BURST):
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        # Levels are kept in thousandths of an answer so that integer
        # milliseconds times answers-per-second need no float.
        self._level = burst * 1000
        self._last = None

    def allow(self, now):
        """Take one answer's worth from the bucket at time `now` (ms)."""
        if self._last is not None:
            dt = now - self._last
            if dt > 0:
                lvl = self._level + dt * self.rate
                cap = self.burst * 1000
                self._level = cap if lvl > cap else lvl
        if self._last is None or now > self._last:
            self._last = now
        if self._level >= 1000:
            self._level -= 1000
            return True
        return False


class Lanes:
    """Two token buckets of the same rate and burst: `known` for the
    gateways the maker knows, `other` for every other source."""

    __slots__ = ("known", "other")

    def __init__(self, rate=DEFAULT_RATE, burst=DEFAULT_BURST):
        self.known = TokenBucket(rate, burst)
        self.other = TokenBucket(rate, burst)

    def allow(self, now, known):
        return (self.known if known else self.other).allow(now)

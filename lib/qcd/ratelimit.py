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

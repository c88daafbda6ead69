# The key source a token maker reads: its secrets (current first) and the
# RFC 6290 §8.2 Child SPI map. Two implementations share this interface:
#
#   MemoryKeys    (here) in RAM: for a gateway that is only a taker, for tests,
#                 and for hosts that keep the secret elsewhere (host only,
#                 outside lib/: a device uses qcd.store; the portable suite
#                 imports it on MicroPython too);
#   qcd.store     the raw `qcd` flash partition of the device, which survives
#                 reboots (that is the point of RFC 6290 §5).
#
# Interface (duck-typed; MicroPython has no abc):
#   secrets() -> list of 32-byte secrets, current first
#   child_get(spi) -> (spi_i, spi_r, initiator, peer_ip_bytes) or None
#   child_put(spi, spi_i, spi_r, initiator, peer_ip_bytes[, gen])
#   generations() -> the generation number of each secret, same order   (optional,
#   generation_of(spi_i, spi_r) -> generation of that IKE SA's token or 0  both)
#   child_drop(spi)
#   children() -> list of (spi, entry), child_count() -> int   (diagnostics, pruning)
# where spi is the inbound ESP SPI as an int, spi_i/spi_r the parent IKE SA's
# 8-byte SPIs, initiator True when we are the IKE SA's original initiator, and
# peer_ip_bytes the taker's address as 4 or 16 bytes, gen the secret
# generation whose token the peer holds for the parent IKE SA (0: unknown).
# With the optional pair, the maker's unprotected answer puts the token the
# peer holds first (issue 11: some takers read only the first N(QCD)).

from qcd.tokens import check_secret, fingerprint


class MemoryKeys:
    __slots__ = ("_secrets", "_gens", "_map", "_ike_gen")

    def __init__(self, secrets=(), children=None):
        self._secrets = [check_secret(s) for s in secrets]
        self._gens = list(range(len(self._secrets), 0, -1))  # current first
        self._map = {}
        self._ike_gen = {}  # spi_i + spi_r -> generation
        if children:
            for spi in children:
                self._map[spi] = children[spi]

    def secrets(self):
        return self._secrets

    def rollover(self, secret):
        """Make `secret` the current one; older ones stay until retired."""
        self._secrets.insert(0, check_secret(secret))
        self._gens.insert(0, (self._gens[0] if self._gens else 0) + 1)

    def retire(self, fp):
        """Forget the secret with fingerprint `fp` (never the current one);
        ValueError saying why, as qcd.store's retire."""
        for i in range(len(self._secrets)):
            if fingerprint(self._secrets[i]) == fp:
                if i == 0:
                    raise ValueError("%s is the current secret: roll over to a new one first" % fp)
                del self._secrets[i]
                del self._gens[i]
                return True
        raise ValueError("no secret with fingerprint %r here (held: %s)" % (fp, ", ".join(fingerprint(s) for s in self._secrets) or "none"))

    def child_get(self, spi):
        return self._map.get(spi)

    def child_put(self, spi, spi_i, spi_r, initiator, peer_ip, gen=0):
        self._map[spi] = (bytes(spi_i), bytes(spi_r), bool(initiator), bytes(peer_ip))
        if gen:
            self._ike_gen[bytes(spi_i) + bytes(spi_r)] = gen

    def generations(self):
        return self._gens

    def generation_of(self, spi_i, spi_r):
        g = self._ike_gen.get(bytes(spi_i) + bytes(spi_r), 0)
        return g if g in self._gens else 0

    def child_drop(self, spi):
        e = self._map.pop(spi, None)
        if e is not None and not any(x[0] == e[0] and x[1] == e[1] for x in self._map.values()):
            self._ike_gen.pop(e[0] + e[1], None)

    def children(self):
        """(spi, entry) pairs of the Child SPI map (a snapshot list)."""
        return list(self._map.items())

    def child_count(self):
        return len(self._map)

    def __repr__(self):
        return "<MemoryKeys secrets=%s children=%d>" % (
            ",".join(fingerprint(s) for s in self._secrets) or "-",
            len(self._map),
        )

    __str__ = __repr__

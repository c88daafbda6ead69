# Diffie-Hellman: group 31 (Curve25519, RFC 8031: X25519 of RFC 7748, through
# ike.crypto) and the RFC 3526 MODP groups with three-argument pow().
#
# The engine proposes 31 first and 14 (MODP-2048, RFC 8247's MUST) as the
# fallback: a responder without 31 answers INVALID_KE_PAYLOAD (RFC 7296
# §1.2) and we retry with 14; as a responder we take either. One X25519 is
# several times cheaper than one 2048-bit pow() (bench: dh). Group 15
# (MODP-3072) is here so an initiator can be configured to lead with it and
# be sent back INVALID_KE_PAYLOAD, which exercises that path against real
# peers. No other group is offered or accepted.

from ike import crypto
from ike.const import CURVE25519, MODP_2048, MODP_3072

GENERATOR = 2

# group -> (modulus length in octets, private exponent bits); the primes
# themselves (RFC 3526) are in ike.modp, loaded on the first MODP key pair.
# RFC 3526 §8: an exponent of twice the group's strength (about 110 bits
# for 2048, 130 for 3072) keeps its security; we use 256 and 384 bits
# (strongSwan's exp_len for the same groups is 32 and 48 octets), which
# makes each pow() several times cheaper than a full-length exponent.
_GROUPS = {MODP_2048: (256, 256), MODP_3072: (384, 384)}
_PRIMES = {}

SUPPORTED = (CURVE25519, MODP_2048, MODP_3072)
X25519_LEN = 32  # RFC 8031 §2.1: the KE payload's data is the 32-octet u


def prime(group):
    p = _PRIMES.get(group)
    if p is None:
        if group not in _GROUPS:
            raise ValueError("not a MODP group")
        from ike import modp

        p = int(modp.P2048 if group == MODP_2048 else modp.P3072, 16)
        _PRIMES[group] = p
    return p


def public_len(group):
    """Octets of a KE payload's Key Exchange Data for this group."""
    if group == CURVE25519:
        return X25519_LEN
    return _GROUPS[group][0]


class KeyPair:
    """One ephemeral DH key: fresh for every IKE_SA_INIT and IKE SA rekey."""

    __slots__ = ("group", "_x", "public")

    def __init__(self, group, rng=None):
        if group == CURVE25519:
            # one made ahead of need with this rng, or else now: RFC 7748
            # §6.1, 32 random octets (X25519 clamps them itself)
            self.group = group
            self._x, self.public = _take(rng or crypto.random_bytes)
            return
        if group not in _GROUPS:
            raise ValueError("unsupported DH group")
        bits = _GROUPS[group][1]
        rnd = (rng or crypto.random_bytes)(bits // 8)
        # Top bit set so every exponent has the full length.
        self._x = int.from_bytes(rnd, "big") | (1 << (bits - 1))
        self.group = group
        y = pow(GENERATOR, self._x, prime(group))
        self.public = y.to_bytes(public_len(group), "big")

    def shared(self, peer_public):
        """g^ir as RFC 7296 §2.14 wants it: big endian, padded to the modulus
        length. None when the peer's value is not acceptable (wrong length,
        or not in 2..p-2: RFC 6989 §2.1's check for MODP groups). For group
        31 the 32-octet X25519 output as is (RFC 8031 §2.1), None when the
        peer's value has the wrong length or gives the all-zero secret
        (RFC 8031 §2.2)."""
        n = public_len(self.group)
        if len(peer_public) != n:
            return None
        if self.group == CURVE25519:
            return crypto.x25519(self._x, peer_public)
        p = prime(self.group)
        y = int.from_bytes(bytes(peer_public), "big")
        if y <= 1 or y >= p - 1:
            return None
        z = pow(y, self._x, p)
        return z.to_bytes(n, "big")


# X25519 key pairs made ahead in idle time: ike.crypto keeps them (its
# header says how), so that this module can be unloaded between handshakes.
prepare = crypto.prepare
ready = crypto.ready


def _take(rng):
    """(private, public): a pair made ahead with this rng, or a new one."""
    r = crypto.take(rng)
    if r is not None:
        return r
    x = bytes(rng(X25519_LEN))
    return x, crypto.x25519_base(x)

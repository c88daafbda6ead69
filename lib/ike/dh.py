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

# RFC 3526 §3: p = 2^2048 - 2^1984 - 1 + 2^64 * { [2^1918 pi] + 124476 }
_P2048 = (
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF"
)
# RFC 3526 §4: p = 2^3072 - 2^3008 - 1 + 2^64 * { [2^2942 pi] + 1690314 }
_P3072 = (
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF"
)

# group -> (prime hex, modulus length in octets, private exponent bits).
# RFC 3526 §8: an exponent of twice the group's strength (about 110 bits
# for 2048, 130 for 3072) keeps its security; we use 256 and 384 bits
# (strongSwan's exp_len for the same groups is 32 and 48 octets), which
# makes each pow() several times cheaper than a full-length exponent.
_GROUPS = {MODP_2048: (_P2048, 256, 256), MODP_3072: (_P3072, 384, 384)}
_PRIMES = {}

SUPPORTED = (CURVE25519, MODP_2048, MODP_3072)
X25519_LEN = 32  # RFC 8031 §2.1: the KE payload's data is the 32-octet u


def prime(group):
    p = _PRIMES.get(group)
    if p is None:
        p = int(_GROUPS[group][0], 16)
        _PRIMES[group] = p
    return p


def public_len(group):
    """Octets of a KE payload's Key Exchange Data for this group."""
    if group == CURVE25519:
        return X25519_LEN
    return _GROUPS[group][1]


class KeyPair:
    """One ephemeral DH key: fresh for every IKE_SA_INIT and IKE SA rekey."""

    __slots__ = ("group", "_x", "public")

    def __init__(self, group, rng=None):
        if group == CURVE25519:
            # RFC 7748 §6.1: 32 random octets; X25519 clamps them itself.
            self._x = bytes((rng or crypto.random_bytes)(X25519_LEN))
            self.group = group
            self.public = crypto.x25519_base(self._x)
            return
        if group not in _GROUPS:
            raise ValueError("unsupported DH group")
        bits = _GROUPS[group][2]
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

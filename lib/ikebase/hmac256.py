# HMAC-SHA-256 (RFC 2104, FIPS 198-1) for QCD tokens (qcd.tokens, RFC 6290
# §5) and the IKE prf, prf+ and integrity checks (ike.crypto, ike.keymat;
# RFC 4868), with the padded key blocks computed once per key:
#
#   k = HmacKey(key)          K0 ^ ipad and K0 ^ opad, 64 octets each
#   k.digest(data)            HMAC-SHA-256(key, data), 32 octets; as often
#                             as wanted with the same key
#   hmac_sha256(key, data)    one-shot, for a key used once
#   ct_equal(a, b)            compare two MACs in constant time (CPython:
#                             hmac.compare_digest; MicroPython: ct_equal_loop)
#
# Written by hand, not micropython-lib's hmac, for two reasons:
#  - micropython-lib's hmac.new() rebuilds both padded keys on every call,
#    byte by byte through a translation table in Python; for a QCD token
#    that is about 80% of the cost (issue 10 §5), and it is the same work
#    for every token of a secret.
#  - MicroPython's built-in hashlib.sha256 objects have only update() and
#    digest() (no copy(); digest() finalises: docs.micropython.org
#    library/hashlib.rst, extmod/modhashlib.c), so the usual trick of
#    keeping the inner and outer hash states after their first block and
#    copying them per message is not available. What can be kept is the
#    two padded key blocks; each MAC then costs two sha256() objects fed in
#    C: K0^ipad | data, then K0^opad | inner digest.
# Stock ESP32 firmware does not freeze micropython-lib's hmac either, so a
# device needs no extra package for this (issue 10 §1).
# The pads are built by XOR on 512-bit integers (done in C) rather than a
# Python loop over the octets. Keys longer than the block are hashed first
# (RFC 2104 §2); shorter ones are padded with zeros.

import hashlib
import sys

_sha256 = hashlib.sha256

BLOCK = 64  # SHA-256 block size B, octets (RFC 2104 §2)
DIGEST_LEN = 32  # SHA-256 output L, octets

_IPAD = int.from_bytes(b"\x36" * BLOCK, "big")
_OPAD = int.from_bytes(b"\x5c" * BLOCK, "big")


class HmacKey:
    """One HMAC-SHA-256 key with its two padded blocks precomputed."""

    __slots__ = ("_ipad", "_opad")

    def __init__(self, key):
        key = bytes(key)
        if len(key) > BLOCK:
            key = _sha256(key).digest()
        k0 = int.from_bytes(key + bytes(BLOCK - len(key)), "big")
        self._ipad = (k0 ^ _IPAD).to_bytes(BLOCK, "big")
        self._opad = (k0 ^ _OPAD).to_bytes(BLOCK, "big")

    def digest(self, data):
        """HMAC-SHA-256(key, data): 32 octets. data is any bytes-like object."""
        h = _sha256(self._ipad)
        h.update(data)
        o = _sha256(self._opad)
        o.update(h.digest())
        return o.digest()


def hmac_sha256(key, data):
    """HMAC-SHA-256(key, data) for a key used once."""
    return HmacKey(key).digest(data)


def ct_equal_loop(a, b):
    """a == b for two MACs, touching every octet whatever the first
    difference (RFC 6290 §9; MicroPython has no hmac.compare_digest). The
    lengths of MACs are public, so a length mismatch returns at once."""
    if len(a) != len(b):
        return False
    r = 0
    for i in range(len(a)):
        r |= a[i] ^ b[i]
    return r == 0


if sys.implementation.name == "micropython":
    ct_equal = ct_equal_loop
else:
    # CPython: the standard library's vetted C implementation.
    from hmac import compare_digest as ct_equal  # noqa: F401

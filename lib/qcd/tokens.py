# QCD tokens (RFC 6290 §5): how a token maker turns a secret and the IKE SPIs
# into a token it can regenerate after a reboot, and how tokens are compared.
#
# RFC 6290 §5 leaves the method to the maker ("a local matter": peers never
# compute each other's tokens) but asks for 16..128 octets, indistinguishable
# from random, unguessable, and regenerable from the SPIs alone. We use
#   §5.1  TOKEN = HMAC-SHA-256(secret, SPI-I | SPI-R)
#   §5.2  TOKEN = HMAC-SHA-256(secret, SPI-I | SPI-R | IPaddr-T)
# with a 32-byte secret and a 32-byte token. A keyed MAC instead of the RFC's
# plain HASH(secret | ...) closes any length-extension question. Precedents:
# Rockhopper uses HMAC-SHA-512 with a 64-byte secret; a racoon2 variant uses
# HMAC-SHA-1 truncated to 16 bytes.
#
# The MAC is ikebase.hmac256 (the IKE prf uses it too): its padded key blocks
# are built once per secret and kept in _keys, so a token costs two sha256()
# runs in C and nothing else (issue 10 §5); no micropython-lib hmac needed.

import hashlib

from ikebase.hmac256 import HmacKey, ct_equal  # noqa: F401 (ct_equal: qcd.taker)
from ikebase.hmac256 import ct_equal_loop as _ct_equal  # noqa: F401 (the portable one)

SECRET_LEN = 32  # octets; RFC 6290 §5.1 wants at least 128 bits
TOKEN_LEN = 32  # octets of HMAC-SHA-256 output
TOKEN_MIN = 16  # RFC 6290 §4.1 bounds on TOKEN_SECRET_DATA
TOKEN_MAX = 128

STYLE_SPIS = 1  # RFC 6290 §5.1: token over the SPIs only
STYLE_ADDR = 2  # RFC 6290 §5.2: token bound to the taker's address too

_sha256 = hashlib.sha256

# secret -> HmacKey. A maker holds one to a few secrets (current, previous);
# more than _KEYS_MAX distinct secrets start the cache afresh.
_keys = {}
_KEYS_MAX = 4


def _key(secret):
    if type(secret) is not bytes:
        secret = bytes(secret)
    k = _keys.get(secret)
    if k is None:
        if len(_keys) >= _KEYS_MAX:
            _keys.clear()
        k = _keys[secret] = HmacKey(secret)
    return k


def make_token(secret, spi_i, spi_r, taker_addr=None):
    """The token for the IKE SA (spi_i, spi_r): 32 bytes.

    taker_addr is the taker's address as 4 (IPv4) or 16 (IPv6) bytes for the
    RFC 6290 §5.2 style, or None for §5.1. Arguments are the caller's, already
    checked (8-byte SPIs); nothing from the network reaches here unchecked.
    """
    msg = spi_i + spi_r if taker_addr is None else spi_i + spi_r + taker_addr
    return _key(secret).digest(msg)


def check_secret(s):
    """s as bytes if it is a secret (32 bytes); ValueError otherwise."""
    if not isinstance(s, (bytes, bytearray)) or len(s) != SECRET_LEN:
        # The message names the rule, never the value.
        raise ValueError("a QCD secret must be %d bytes" % SECRET_LEN)
    return bytes(s)


def token_digest(token):
    """SHA-256 of a token: what a taker keeps instead of the token itself."""
    return _sha256(bytes(token)).digest()


def fingerprint(secret):
    """First 8 bytes of SHA-256(secret) in hex: names a secret, never shows it."""
    h = _sha256(bytes(secret)).digest()[:8]
    return "".join("%02x" % b for b in h)


def ip_bytes(addr):
    """Dotted IPv4 or textual IPv6 address -> 4 or 16 bytes.

    Written here because MicroPython has no socket.inet_pton. Raises ValueError
    on anything that is not an address.
    """
    if ":" not in addr:
        parts = addr.split(".")
        if len(parts) != 4:
            raise ValueError("not an IPv4 address")
        out = bytearray(4)
        for i in range(4):
            p = parts[i]
            if not p or len(p) > 3 or not p.isdigit():
                raise ValueError("not an IPv4 address")
            v = int(p)
            if v > 255:
                raise ValueError("not an IPv4 address")
            out[i] = v
        return bytes(out)
    # IPv6: up to 8 groups of 1-4 hex digits, one "::" for a run of zeros, and
    # an optional dotted IPv4 tail (::ffff:192.0.2.1).
    tail = b""
    if "." in addr:
        cut = addr.rfind(":")
        tail = ip_bytes(addr[cut + 1 :])
        addr = addr[: cut + 1] + "0:0"
    halves = addr.split("::")
    if len(halves) > 2:
        raise ValueError("not an IPv6 address")

    def groups(s):
        if not s:
            return []
        out = []
        for g in s.split(":"):
            if not g or len(g) > 4:
                raise ValueError("not an IPv6 address")
            for c in g:
                if c not in "0123456789abcdefABCDEF":
                    raise ValueError("not an IPv6 address")
            out.append(int(g, 16))
        return out

    head = groups(halves[0])
    if len(halves) == 2:
        rest = groups(halves[1])
        fill = 8 - len(head) - len(rest)
        if fill < 1:
            raise ValueError("not an IPv6 address")
        words = head + [0] * fill + rest
    else:
        words = head
    if len(words) != 8:
        raise ValueError("not an IPv6 address")
    out = bytearray(16)
    for i in range(8):
        out[2 * i] = words[i] >> 8
        out[2 * i + 1] = words[i] & 0xFF
    if tail:
        out[12:16] = tail
    return bytes(out)

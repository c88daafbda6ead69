# The IKEv2 wire format as far as Quick Crash Detection needs it: parsing a
# message (RFC 7296 §3.1-3.2, ikebase.ikev2.parse, with its Notify payloads,
# §3.10), and the two unprotected answers a token maker sends (RFC 6290
# §4.5, §8.2).
#
# The framing itself (header, payload chain, notify codec, UDP 4500 split)
# is ikebase.ikev2, shared with lib/ike: one set of checks and caps for both.
# Everything here takes bytes from the network; a malformed datagram yields
# None, never an exception (design.md principle 5), and `last_error` says
# why. Nothing here decrypts: a protected message (first payload SK or SKF)
# is only checked for a consistent frame.

import struct

from ikebase import ikev2

# The numbers, build() and notify_body() for QCD and its tools, as wire.X
# (a star import costs the device nothing per name).
from ikebase.ikev2 import *  # noqa: F401,F403,F405

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# RFC 4303 §2.1: SPI values 1..255 are reserved by IANA; 0 is never an ESP
# SPI and on UDP 4500 marks an IKE message (RFC 3948 §2.2).
_ESP_SPI_MIN = const(256)
# SPI (4) + Sequence Number (4): the fixed ESP header (RFC 4303 §2).
_ESP_HDR_LEN = const(8)


# The parsed message is ikebase.ikev2's (Message, with payload offsets and
# notifies()): the engine parses a datagram once and the hook uses that.

# Why the last parse() returned None: a constant string, for tools and logs.
last_error = None


def parse(buf):
    """Parse one IKE message (no non-ESP marker); an ikebase.ikev2.Message,
    or None if malformed; on None, `last_error` says which check failed."""
    global last_error
    m = ikev2.parse(buf)
    if m is None:
        last_error = ikev2.last_error
    return m


def esp_spi(packet):
    """The SPI of an ESP packet (RFC 4303 §2.1), or None if it cannot be one."""
    if len(packet) < _ESP_HDR_LEN:
        return None
    spi = struct.unpack_from(">I", packet)[0]
    return spi if spi >= _ESP_SPI_MIN else None


def answer_invalid_ike_spi(req, tokens, proto_id=PROTO_IKE):
    """The RFC 6290 §4.5 answer to a request for unknown IKE SPIs.

    `HDR, N(INVALID_IKE_SPI), N(QUICK_CRASH_DETECTION)+`, unprotected (RFC
    7296 §2.21.4): same SPIs and Message ID as the request, exchange type
    copied, Response flag set, Initiator flag the opposite of the request's
    (the request's I flag says whether its sender is the original initiator).
    N(INVALID_IKE_SPI) has no SPI, so its Protocol ID is 0 (§3.10); each QCD
    notify carries proto_id (RFC 6290 §4.1 says 1; receivers ignore it).
    """
    flags = FLAG_R | (0 if req.flags & FLAG_I else FLAG_I)
    return build(req.spi_i, req.spi_r, req.exchange, flags, req.msg_id, _with_tokens(INVALID_IKE_SPI, b"", tokens, proto_id))


def answer_invalid_spi(spi, spi_i, spi_r, initiator, tokens, proto_id=PROTO_IKE):
    """The RFC 6290 §8.2 answer to an ESP packet whose SPI nobody knows.

    `HDR, N(INVALID_SPI), N(QUICK_CRASH_DETECTION)+`, unprotected, with the
    parent IKE SA's SPIs from the stored Child SPI map in the header so the
    taker can find the SA. It answers no IKE request: an INFORMATIONAL with
    Message ID 0, the Response flag clear and the Initiator flag telling our
    original role. N(INVALID_SPI) carries the packet's SPI as its data (RFC
    7296 §3.10.1) with an empty SPI field, hence Protocol ID 0.
    """
    return build(spi_i, spi_r, INFORMATIONAL, FLAG_I if initiator else 0, 0, _with_tokens(INVALID_SPI, spi, tokens, proto_id))


def _with_tokens(ntype, data, tokens, proto_id):
    # N(ntype, data) then one N(QUICK_CRASH_DETECTION) per token (RFC 6290 §4.5, §8.2)
    pl = [(PT_N, notify_body(ntype, data))]
    for t in tokens:
        pl.append((PT_N, notify_body(QUICK_CRASH_DETECTION, t, proto_id)))
    return pl

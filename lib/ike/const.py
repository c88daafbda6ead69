# IKEv2 numbers, named as RFC 7296 (and the RFCs it leans on) name them.
# One table for the whole engine; the numbers lib/qcd uses too (header,
# exchange types, flags, the payload and notify types QCD meets) are
# ikebase.ikev2's, imported here so that they exist once.

from ikebase.ikev2 import *  # noqa: F401,F403 (a star import costs the device nothing per name)
from ikebase.ikev2 import GEN_LEN as GEN_HDR_LEN  # noqa: F401

# Names with a leading underscore are numbers only this module uses (in its
# tables): MicroPython's const() keeps them out of the module's globals, so
# a device holds neither their names nor their slots.
try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# Payload types (§3.2), besides ikebase.ikev2's
PT_IDI = const(35)
PT_IDR = const(36)
_PT_CERT = const(37)
_PT_CERTREQ = const(38)
PT_AUTH = const(39)
PT_NONCE = const(40)
PT_TSI = const(44)
PT_TSR = const(45)
PT_CP = const(47)
_PT_EAP = const(48)

# Payload types this engine understands; RFC 7296 §2.5: an unknown payload
# with the critical bit set is answered with UNSUPPORTED_CRITICAL_PAYLOAD.
KNOWN_PAYLOADS = (PT_SA, PT_KE, PT_IDI, PT_IDR, _PT_CERT, _PT_CERTREQ, PT_AUTH, PT_NONCE, PT_N, PT_D, PT_V, PT_TSI, PT_TSR, PT_CP, _PT_EAP)

# Protocol IDs (§3.3.1)
_PROTO_AH = const(2)
PROTO_ESP = const(3)

# Transform types (§3.3.2)
TRANS_ENCR = const(1)
TRANS_PRF = const(2)
TRANS_INTEG = const(3)
TRANS_DH = const(4)
TRANS_ESN = const(5)

# Transform IDs we use (IANA IKEv2 registries)
ENCR_AES_CBC = const(12)  # RFC 3602
PRF_HMAC_SHA2_256 = const(5)  # RFC 4868
AUTH_HMAC_SHA2_256_128 = const(12)  # RFC 4868
MODP_2048 = const(14)  # RFC 3526 §3
MODP_3072 = const(15)  # RFC 3526 §4
CURVE25519 = const(31)  # RFC 8031 (X25519, RFC 7748)
ESN_NONE = const(0)

# Transform attribute (§3.3.5): Key Length, TV format (AF bit set)
ATTR_KEY_LENGTH = const(14)
ATTR_TV = const(0x8000)

# Identification types (§3.5)
ID_IPV4_ADDR = const(1)
ID_FQDN = const(2)
ID_RFC822_ADDR = const(3)
_ID_IPV6_ADDR = const(5)
_ID_KEY_ID = const(11)

# Authentication methods (§3.8)
AUTH_SHARED_KEY_MIC = const(2)

# Traffic selector types (§3.13.1)
TS_IPV4_ADDR_RANGE = const(7)

# Notify message types (§3.10.1), error types below 16384
UNSUPPORTED_CRITICAL_PAYLOAD = const(1)
_INVALID_MAJOR_VERSION = const(5)
INVALID_SYNTAX = const(7)
_INVALID_MESSAGE_ID = const(9)
NO_PROPOSAL_CHOSEN = const(14)
INVALID_KE_PAYLOAD = const(17)
AUTHENTICATION_FAILED = const(24)
_SINGLE_PAIR_REQUIRED = const(34)
NO_ADDITIONAL_SAS = const(35)
_INTERNAL_ADDRESS_FAILURE = const(36)
_FAILED_CP_REQUIRED = const(37)
TS_UNACCEPTABLE = const(38)
_INVALID_SELECTORS = const(39)
TEMPORARY_FAILURE = const(43)
CHILD_SA_NOT_FOUND = const(44)
ERROR_MAX = const(16383)  # types up to this one are errors (§3.10.1)

# Status types
_SET_WINDOW_SIZE = const(16385)
_ADDITIONAL_TS_POSSIBLE = const(16386)
_IPCOMP_SUPPORTED = const(16387)
NAT_DETECTION_SOURCE_IP = const(16388)
NAT_DETECTION_DESTINATION_IP = const(16389)
COOKIE = const(16390)
_USE_TRANSPORT_MODE = const(16391)
_MULTIPLE_AUTH_SUPPORTED = const(16404)  # RFC 4739
_CHILDLESS_IKEV2_SUPPORTED = const(16418)  # RFC 6023

# §2.6: a COOKIE notify carries 1..64 octets
COOKIE_MAX = const(64)
# §2.10: nonces are 16..256 octets
NONCE_MIN = const(16)
NONCE_MAX = const(256)
NONCE_LEN = const(32)  # ours: at least half the PRF key size (§2.10), SHA-256 -> 32

# RFC 4303 §2.1: SPIs 1..255 are reserved by IANA
ESP_SPI_MIN = const(256)

EXCHANGE_NAMES = {IKE_SA_INIT: "IKE_SA_INIT", IKE_AUTH: "IKE_AUTH", CREATE_CHILD_SA: "CREATE_CHILD_SA", INFORMATIONAL: "INFORMATIONAL"}

PAYLOAD_NAMES = {
    PT_SA: "SA",
    PT_KE: "KE",
    PT_IDI: "IDi",
    PT_IDR: "IDr",
    _PT_CERT: "CERT",
    _PT_CERTREQ: "CERTREQ",
    PT_AUTH: "AUTH",
    PT_NONCE: "No",
    PT_N: "N",
    PT_D: "D",
    PT_V: "V",
    PT_TSI: "TSi",
    PT_TSR: "TSr",
    PT_SK: "SK",
    PT_CP: "CP",
    _PT_EAP: "EAP",
    PT_SKF: "SKF",
}

NOTIFY_NAMES = {
    UNSUPPORTED_CRITICAL_PAYLOAD: "UNSUPPORTED_CRITICAL_PAYLOAD",
    INVALID_IKE_SPI: "INVALID_IKE_SPI",
    _INVALID_MAJOR_VERSION: "INVALID_MAJOR_VERSION",
    INVALID_SYNTAX: "INVALID_SYNTAX",
    _INVALID_MESSAGE_ID: "INVALID_MESSAGE_ID",
    INVALID_SPI: "INVALID_SPI",
    NO_PROPOSAL_CHOSEN: "NO_PROPOSAL_CHOSEN",
    INVALID_KE_PAYLOAD: "INVALID_KE_PAYLOAD",
    AUTHENTICATION_FAILED: "AUTHENTICATION_FAILED",
    TS_UNACCEPTABLE: "TS_UNACCEPTABLE",
    TEMPORARY_FAILURE: "TEMPORARY_FAILURE",
    CHILD_SA_NOT_FOUND: "CHILD_SA_NOT_FOUND",
    INITIAL_CONTACT: "INITIAL_CONTACT",
    NAT_DETECTION_SOURCE_IP: "NAT_DETECTION_SOURCE_IP",
    NAT_DETECTION_DESTINATION_IP: "NAT_DETECTION_DESTINATION_IP",
    COOKIE: "COOKIE",
    _USE_TRANSPORT_MODE: "USE_TRANSPORT_MODE",
    REKEY_SA: "REKEY_SA",
    _MULTIPLE_AUTH_SUPPORTED: "MULTIPLE_AUTH_SUPPORTED",
    _CHILDLESS_IKEV2_SUPPORTED: "CHILDLESS_IKEV2_SUPPORTED",
    QUICK_CRASH_DETECTION: "QUICK_CRASH_DETECTION",
    # Not handled here, but strongSwan 5.9 sends them (and issue 11 saw
    # 16396 and 16410 from another peer): named in a device's log too.
    # Hosts lend the whole IANA table (qcdhost names / qcdhost.names).
    16396: "MOBIKE_SUPPORTED",
    16397: "ADDITIONAL_IP4_ADDRESS",
    16398: "ADDITIONAL_IP6_ADDRESS",
    16399: "NO_ADDITIONAL_ADDRESSES",
    16406: "REDIRECT_SUPPORTED",
    16410: "TICKET_REQUEST",
    16417: "EAP_ONLY_AUTHENTICATION",
    16430: "IKEV2_FRAGMENTATION_SUPPORTED",
    16431: "SIGNATURE_HASH_ALGORITHMS",
}


def exchange_name(x):
    return EXCHANGE_NAMES.get(x, "EXCHANGE_%d" % x)


def notify_name(t):
    return NOTIFY_NAMES.get(t, "N_%d" % t)

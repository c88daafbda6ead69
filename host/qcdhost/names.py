# Human-readable names for IKE numbers, and a decoder that prints a message
# the way qcdtool and the diagnostics show it. Kept out of qcd.wire so a device
# that never prints a packet does not carry these tables in its heap; host
# only (outside lib/, so never deployed, installed by mip or frozen).

from qcd import wire

# Every IKEv2 Notify Message Type IANA has assigned ("IKEv2 Notify Message
# Status Types" and "Error Types", https://www.iana.org/assignments/
# ikev2-parameters), so a log line or decoded datagram shows a peer's
# MOBIKE_SUPPORTED rather than N_16396. host_tests/test_wire_decoders.py
# checks it against scapy's table. Hosts also lend it to lib/ike's log
# (ike.const.NOTIFY_NAMES.update(NOTIFY_NAMES), qcd-peer); a device's
# engine keeps its own short table (the types it handles, and those
# strongSwan sends), to save heap.
NOTIFY_NAMES = {
    1: "UNSUPPORTED_CRITICAL_PAYLOAD",
    4: "INVALID_IKE_SPI",
    5: "INVALID_MAJOR_VERSION",
    7: "INVALID_SYNTAX",
    9: "INVALID_MESSAGE_ID",
    11: "INVALID_SPI",
    14: "NO_PROPOSAL_CHOSEN",
    17: "INVALID_KE_PAYLOAD",
    24: "AUTHENTICATION_FAILED",
    34: "SINGLE_PAIR_REQUIRED",
    35: "NO_ADDITIONAL_SAS",
    36: "INTERNAL_ADDRESS_FAILURE",
    37: "FAILED_CP_REQUIRED",
    38: "TS_UNACCEPTABLE",
    39: "INVALID_SELECTORS",
    40: "UNACCEPTABLE_ADDRESSES",
    41: "UNEXPECTED_NAT_DETECTED",
    42: "USE_ASSIGNED_HoA",
    43: "TEMPORARY_FAILURE",
    44: "CHILD_SA_NOT_FOUND",
    45: "INVALID_GROUP_ID",
    46: "AUTHORIZATION_FAILED",
    47: "NOTIFY_STATE_NOT_FOUND",
    16384: "INITIAL_CONTACT",
    16385: "SET_WINDOW_SIZE",
    16386: "ADDITIONAL_TS_POSSIBLE",
    16387: "IPCOMP_SUPPORTED",
    16388: "NAT_DETECTION_SOURCE_IP",
    16389: "NAT_DETECTION_DESTINATION_IP",
    16390: "COOKIE",
    16391: "USE_TRANSPORT_MODE",
    16392: "HTTP_CERT_LOOKUP_SUPPORTED",
    16393: "REKEY_SA",
    16394: "ESP_TFC_PADDING_NOT_SUPPORTED",
    16395: "NON_FIRST_FRAGMENTS_ALSO",
    16396: "MOBIKE_SUPPORTED",
    16397: "ADDITIONAL_IP4_ADDRESS",
    16398: "ADDITIONAL_IP6_ADDRESS",
    16399: "NO_ADDITIONAL_ADDRESSES",
    16400: "UPDATE_SA_ADDRESSES",
    16401: "COOKIE2",
    16402: "NO_NATS_ALLOWED",
    16403: "AUTH_LIFETIME",
    16404: "MULTIPLE_AUTH_SUPPORTED",
    16405: "ANOTHER_AUTH_FOLLOWS",
    16406: "REDIRECT_SUPPORTED",
    16407: "REDIRECT",
    16408: "REDIRECTED_FROM",
    16409: "TICKET_LT_OPAQUE",
    16410: "TICKET_REQUEST",
    16411: "TICKET_ACK",
    16412: "TICKET_NACK",
    16413: "TICKET_OPAQUE",
    16414: "LINK_ID",
    16415: "USE_WESP_MODE",
    16416: "ROHC_SUPPORTED",
    16417: "EAP_ONLY_AUTHENTICATION",
    16418: "CHILDLESS_IKEV2_SUPPORTED",
    16419: "QUICK_CRASH_DETECTION",
    16420: "IKEV2_MESSAGE_ID_SYNC_SUPPORTED",
    16421: "IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED",
    16422: "IKEV2_MESSAGE_ID_SYNC",
    16423: "IPSEC_REPLAY_COUNTER_SYNC",
    16424: "SECURE_PASSWORD_METHODS",
    16425: "PSK_PERSIST",
    16426: "PSK_CONFIRM",
    16427: "ERX_SUPPORTED",
    16428: "IFOM_CAPABILITY",
    16429: "SENDER_REQUEST_ID",
    16430: "IKEV2_FRAGMENTATION_SUPPORTED",
    16431: "SIGNATURE_HASH_ALGORITHMS",
    16432: "CLONE_IKE_SA_SUPPORTED",
    16433: "CLONE_IKE_SA",
    16434: "PUZZLE",
    16435: "USE_PPK",
    16436: "PPK_IDENTITY",
    16437: "NO_PPK_AUTH",
    16438: "INTERMEDIATE_EXCHANGE_SUPPORTED",
    16439: "IP4_ALLOWED",
    16440: "IP6_ALLOWED",
    16441: "ADDITIONAL_KEY_EXCHANGE",
    16442: "USE_AGGFRAG",
}
EXCHANGE_NAMES = {
    34: "IKE_SA_INIT",
    35: "IKE_AUTH",
    36: "CREATE_CHILD_SA",
    37: "INFORMATIONAL",
    43: "IKE_INTERMEDIATE",
}
PAYLOAD_NAMES = {
    33: "SA",
    34: "KE",
    35: "IDi",
    36: "IDr",
    37: "CERT",
    38: "CERTREQ",
    39: "AUTH",
    40: "Nonce",
    41: "N",
    42: "D",
    43: "V",
    44: "TSi",
    45: "TSr",
    46: "SK",
    47: "CP",
    48: "EAP",
    53: "SKF",
}


def describe(buf):
    """Lines that show a message's header and payloads, notify types by name;
    None if the message is malformed (qcd.wire.last_error says why)."""
    m = wire.parse(buf)
    if m is None:
        return None
    fl = []
    if m.flags & wire.FLAG_I:
        fl.append("I")
    if m.flags & wire.FLAG_R:
        fl.append("R")
    if m.flags & wire.FLAG_V:
        fl.append("V")
    lines = [
        "IKE header: SPIi %s SPIr %s" % (m.spi_i.hex(), m.spi_r.hex()),
        "  version %d.%d, exchange %s (%d), flags %s (0x%02x), message ID %d, length %d"
        % (
            m.version >> 4,
            m.version & 15,
            EXCHANGE_NAMES.get(m.exchange, "?"),
            m.exchange,
            "+".join(fl) or "-",
            m.flags,
            m.msg_id,
            len(buf),
        ),
        "  %s" % ("protected (SK/SKF)" if m.is_protected() else "unprotected"),
    ]
    for ptype, crit, start, end in m.payloads:
        name = PAYLOAD_NAMES.get(ptype, "payload %d" % ptype)
        line = "payload %s (%d), %d octets%s" % (name, ptype, end - start + wire.GEN_LEN, ", critical" if crit else "")
        if ptype == wire.PT_N:
            if end - start < wire.NOTIFY_FIXED or start + wire.NOTIFY_FIXED + buf[start + 1] > end:
                return None
            ntype = (buf[start + 2] << 8) | buf[start + 3]
            ss = buf[start + 1]
            data = buf[start + wire.NOTIFY_FIXED + ss : end]
            line += ": %s (%d), protocol %d, SPI %s, data %d octets %s" % (
                NOTIFY_NAMES.get(ntype, "?"),
                ntype,
                buf[start],
                bytes(buf[start + wire.NOTIFY_FIXED : start + wire.NOTIFY_FIXED + ss]).hex() or "-",
                len(data),
                bytes(data).hex(),
            )
        elif ptype == wire.PT_SK or ptype == wire.PT_SKF:
            line += ", first inner payload %s" % PAYLOAD_NAMES.get(buf[start - wire.GEN_LEN], str(buf[start - wire.GEN_LEN]))
        lines.append(line)
    return lines

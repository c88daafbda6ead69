# Human-readable names for IKE numbers, and a decoder that prints a message
# the way qcdtool and the diagnostics show it. Kept out of qcd.wire so a device
# that never prints a packet does not carry these tables in its heap; host
# only (outside lib/, so never deployed, installed by mip or frozen).

from qcd import wire

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
    38: "TS_UNACCEPTABLE",
    16384: "INITIAL_CONTACT",
    16388: "NAT_DETECTION_SOURCE_IP",
    16389: "NAT_DETECTION_DESTINATION_IP",
    16390: "COOKIE",
    16393: "REKEY_SA",
    16419: "QUICK_CRASH_DETECTION",
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

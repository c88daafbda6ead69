#!/usr/bin/env python3
"""Hosts on a gateway's protected side, for data-plane interop tests: run in
strongSwan's network namespace (qcdhost.strongswan Charon.gateway_side),
where kernel-libipsec carries what is routed to the Child SA.

  gateway_side.py echo ADDR PORT                 UDP echo service (until killed)
  gateway_side.py ping SRC DST SEQ               one ICMP echo request (raw socket);
                                                 prints the reply's JSON or exits 1
  gateway_side.py send SRC SPORT DST DPORT TEXT  one UDP datagram
"""
import json
import socket
import struct
import sys
import time


def checksum(b):
    if len(b) % 2:
        b += b"\x00"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def echo(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, int(port)))
    print("echo on %s:%s" % (addr, port), flush=True)
    while True:
        data, src = s.recvfrom(65535)
        print("echo %d octets from %s:%d" % (len(data), src[0], src[1]), flush=True)
        s.sendto(data, src)


def ping(src, dst, seq, timeout=10.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.bind((src, 0))
    ident = 0x4242
    body = struct.pack("!BBHHH", 8, 0, 0, ident, int(seq)) + b"gateway-side ping"
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    s.sendto(body, (dst, 0))
    s.settimeout(0.5)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            pkt, frm = s.recvfrom(65535)
        except socket.timeout:
            continue
        hl = (pkt[0] & 15) * 4
        t, code, ck, rid, rseq = struct.unpack("!BBHHH", pkt[hl : hl + 8])
        if t == 0 and rid == ident and rseq == int(seq) and frm[0] == dst:
            print(json.dumps({"from": frm[0], "seq": rseq, "data": pkt[hl + 8 :].decode(), "checksum_ok": checksum(pkt[hl:]) == 0}))
            return 0
    return 1


def send(src, sport, dst, dport, text):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, int(sport)))
    s.sendto(text.encode(), (dst, int(dport)))
    return 0


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    sys.exit({"echo": echo, "ping": ping, "send": send}[cmd](*args) or 0)

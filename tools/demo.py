#!/usr/bin/env python3
"""The QCD story in one process: a device (token maker) and a gateway (token
taker) set up an IKE SA, the device reboots, and the gateway learns it from
one unprotected answer instead of minutes of liveness-check retransmissions.

Every step goes through lib/qcd's notify hook, the same calls an IKE engine
makes; the IKE messages themselves are reduced to their headers here (the
encrypted payload is opaque bytes), which is all QCD looks at.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))

from qcd import hook, names, wire  # noqa: E402
from qcd.keys import MemoryKeys  # noqa: E402
from qcd.tokens import fingerprint  # noqa: E402

T0 = time.monotonic()


def say(who, text):
    print("%7.3f s  %-8s %s" % (time.monotonic() - T0, who, text), flush=True)


def main():
    dev_addr, gw_addr = ("10.0.0.2", 500), ("10.0.0.1", 500)
    secret = os.urandom(32)
    flash = MemoryKeys([secret])  # stands in for the device's qcd partition
    say("device", "boot 1: secret %s (fingerprint) from flash" % fingerprint(secret))
    device = hook.QcdHook(hook.MAKER, flash)
    gateway = hook.QcdHook(hook.TAKER)

    spi_i, spi_r = os.urandom(8), os.urandom(8)
    say("device", "IKE_SA_INIT done: IKE SA %s/%s" % (spi_i.hex(), spi_r.hex()))
    ns = device.notifies_for(hook.AUTH_REQUEST, spi_i, spi_r, True, gw_addr)
    say("device", "IKE_AUTH request carries N(QUICK_CRASH_DETECTION), %d-byte token (inside SK)" % len(ns[0][2]))
    gateway.protected(wire.IKE_AUTH, spi_i, spi_r, ns, 0)
    device.ike_sa_event(hook.ESTABLISHED, spi_i, spi_r, True, gw_addr, 0)
    gateway.ike_sa_event(hook.ESTABLISHED, spi_i, spi_r, False, dev_addr, 0)
    say("gateway", "IKE SA up; token stored (%d held)" % len(gateway.taker))
    device.child_sa_event(hook.ESTABLISHED, 0xC0DE0001, spi_i, spi_r, True, gw_addr, 0)
    say("device", "Child SA up, inbound ESP SPI c0de0001 mapped to the IKE SA (RFC 6290 8.2)")

    say("device", "*** power cut: RAM state gone, flash survives ***")
    device = hook.QcdHook(hook.MAKER, flash)
    say("device", "boot 2: same secret %s, no IKE SA" % fingerprint(flash.secrets()[0]))

    liveness = wire.build(spi_i, spi_r, wire.INFORMATIONAL, 0, 7, [(wire.PT_SK, os.urandom(48))])
    say("gateway", "sends a liveness check (protected INFORMATIONAL, message ID 7)")
    answer = device.unknown_ike_spi(liveness, gw_addr, 1000)
    say("device", "unknown IKE SPIs: answers unprotected:")
    for line in names.describe(answer):
        print("            | " + line)
    verdict = gateway.unprotected(answer, dev_addr, dev_addr, 1000)
    say("gateway", "token matches: delete the stale IKE SA now" if verdict else "token rejected")
    say("gateway", "time to detect: one round trip (RFC 7296 alone: ~165 s of retransmissions with strongSwan defaults)")

    forged = bytearray(answer)
    forged[-1] ^= 1
    say("attacker", "replays that answer with one bit flipped: %s" % ("accepted!" if gateway.unprotected(bytes(forged), ("203.0.113.9", 500), dev_addr, 0) else "ignored (counter only)"))
    st = gateway.status()["taker"]
    say("gateway", "counters: verified=%d mismatch=%d no_token=%d" % (st["verified"], st["mismatch"], st["no_token"]))
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())

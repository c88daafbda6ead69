# The notify hook the engine calls (docs/hook.md is the contract): a base
# class whose methods do nothing. An extension (qcd.hook.QcdHook for RFC
# 6290) implements the same method names; the engine needs no import from
# it. One method per protocol event, named after it (as strongSwan's
# listener.h: ike_updown, ike_rekey, child_updown), never an event name in
# a string argument. `sa`, `old`, `new` are the engine's IKE SA objects:
# anything with spi_i, spi_r (8 octets each), initiator (we are the original
# initiator) and peer ((ip, port)). Notifies are lists of (type, protocol
# id, data) tuples; on input (type, protocol id, spi, data) too. `msg` is
# the message as the engine parsed it (ikebase.ikev2.Message; msg.buf is
# the bytes): the hook does not parse it again.
#
# The engine calls every method inside try/except: a hook that raises is
# counted (Engine.counters["hook_errors"]) and treated as the default answer.


class NullHook:
    """No extension: adds nothing, answers nothing, deletes nothing."""

    # messages we build: notifies to add inside SK
    def auth_request(self, sa, now):
        return []

    def rekey_response(self, sa, now):
        return []

    def address_changed(self, sa, now):
        return []

    # lifecycle and authenticated messages
    def ike_created(self, sa, now):
        return None

    def ike_up(self, sa, notifies, children, now):
        return []  # notifies for our IKE_AUTH response when we respond

    def ike_rekey(self, old, new, notifies, now):
        return []  # notifies for an INFORMATIONAL on new when we initiated

    def protected(self, sa, exchange, notifies, now):
        return None

    def ike_down(self, sa, now):
        return None

    def child_up(self, sa, spi_in, now):
        return None

    def child_down(self, sa, spi_in, now):
        return None

    # unprotected datagrams
    def unknown_ike_spi(self, msg, src, now):
        return None

    def unprotected(self, msg, src, sa, now):
        return False

    def unknown_esp_spi(self, packet, src, now):
        return None

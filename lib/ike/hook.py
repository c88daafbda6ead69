# The notify hook the engine calls (docs/hook.md is the contract): a base
# class whose methods do nothing. An extension (qcd.hook.QcdHook for RFC
# 6290) implements the same method names; the engine needs no import from
# it, and moments are plain strings. Lifecycle methods are named after the
# event (as strongSwan's listener.h: ike_updown, ike_rekey, child_updown) and
# take the engine's SA object: anything with spi_i, spi_r (8 octets each),
# initiator (we are the original initiator) and peer ((ip, port)).
#
# The engine calls every method inside try/except: a hook that raises is
# counted (Engine.counters["hook_errors"]) and treated as the default answer.

# Moments (docs/hook.md §1)
AUTH_REQUEST = "auth_request"
AUTH_RESPONSE = "auth_response"
REKEY_RESPONSE = "rekey_response"
REKEY_INITIATED = "rekey_initiated"
ADDRESS_CHANGED = "address_changed"

class NullHook:
    """No extension: adds nothing, answers nothing, deletes nothing."""

    def notifies_for(self, moment, spi_i, spi_r, initiator, peer):
        return []

    def protected(self, exchange, spi_i, spi_r, notifies, now):
        return None

    def unknown_ike_spi(self, msg, src, now):
        return None

    def unprotected(self, msg, src, peer, now):
        return False

    def unknown_esp_spi(self, packet, src, now):
        return None

    def ike_created(self, sa, now):
        return None

    def ike_up(self, sa, now):
        return None

    def ike_rekey(self, old, new, now):
        return None

    def ike_down(self, sa, now):
        return None

    def child_up(self, sa, spi_in, now):
        return None

    def child_down(self, sa, spi_in, now):
        return None

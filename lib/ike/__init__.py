# ike: a compact IKEv2 engine (RFC 7296) for MicroPython and CPython.
#
# Sans-I/O core (ike.engine) with one module per exchange, a notify hook for
# extensions (ike.hook; docs/hook.md), and two thin I/O shells (the CPython
# one, qcdhost.ikeshell, lives on the host side, outside lib/):
#   ike.device   MicroPython sockets + select (firmware)
#   ike.aio      the same device loop as an asyncio task (MicroPython and
#                CPython asyncio), beside the app's own tasks
#
#   ike.const            RFC 7296 numbers
#   ike.crypto           the crypto adapter (cryptolib / cryptography)
#   ike.dh               Diffie-Hellman: X25519 (group 31), MODP with pow()
#   ike.x25519           X25519 (RFC 7748) by hand, for MicroPython
#   ike.keymat           prf, prf+, SKEYSEED, IKE and Child SA keys, PSK AUTH
#   ike.message          header, payload chain, SK encryption
#   ike.payloads         payload bodies (SA, KE, ID, AUTH, N, D, TS, ...)
#   ike.proposals        the suite we offer and accept
#   ike.ts               traffic selectors
#   ike.state            IKE SA and Child SA state tables
#   ike.sa               what is held per IKE SA and Child SA
#   ike.ike_sa_init, ike.ike_auth, ike.informational, ike.create_child_sa
#                        the exchanges
#   ike.esp              ESP-in-UDP with the Child SA keys
#   ike.tunnel           the data plane: UDP datagrams and ping through the
#                        Child SA (IPv4 in ESP tunnel mode); loaded only by
#                        an app that opens a tunnel
#   ike.config           the JSON configuration (Config, what the engine holds)
#   ike.config_check     its checks, loaded while a Config is made (a device
#                        unloads them after its setup: config.forget_checks)
#   ike.config_payload   CP(CFG_REQUEST/CFG_REPLY) for a virtual IP, and a
#                        gateway's address pool; loaded only when configured
#
# lib/ike never imports qcd (design principle 2).

__version__ = "0.1.0"

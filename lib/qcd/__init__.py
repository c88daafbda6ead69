# qcd: RFC 6290 Quick Crash Detection for MicroPython VPN endpoints.
#
#   qcd.tokens     token generation (§5) and constant-time comparison
#   qcd.wire       IKEv2 header, payload chain and Notify codec; §4.5/§8.2 answers
#   qcd.maker      the token maker: hand-over and unprotected answers
#   qcd.taker      the token taker: stored tokens and verification
#   qcd.ratelimit  token bucket for unprotected answers (§9)
#   qcd.keys       key source interface and an in-RAM implementation (host only)
#   qcd.store      the `qcd` flash partition: the key source that survives reboots
#   qcd.hook       QcdHook: all of it behind the IKE engine's notify hook
#   qcd.names      names of IKE numbers and a message decoder (tools; host only)
#   qcd.diag       REPL diagnostics
#
# Modules are imported on demand: `import qcd` costs almost nothing on a device.
# "host only": no device code imports it, so it is not deployed, installed by
# mip or frozen (tools/board/remote.py HOST_ONLY).

__version__ = "0.1.0"

# qcd: RFC 6290 Quick Crash Detection for MicroPython VPN endpoints.
#
#   qcd.tokens     token generation (§5) and constant-time comparison
#   qcd.wire       IKEv2 header, payload chain and Notify codec; §4.5/§8.2 answers
#   qcd.maker      the token maker: hand-over and unprotected answers
#   qcd.taker      the token taker: stored tokens and verification
#   qcd.ratelimit  token bucket for unprotected answers (§9)
#   qcd.store      the `qcd` flash partition: the key source that survives reboots
#   qcd.hook       QcdHook: all of it behind the IKE engine's notify hook
#   qcd.diag       REPL diagnostics
#
# Modules are imported on demand: `import qcd` costs almost nothing on a device.
# lib/ is exactly what a board gets; host-only code (the in-RAM key source
# qcdhost.keys, IKE names qcdhost.names) lives in host/qcdhost.
# __version__ is the one version: the host package's (pyproject.toml), and
# package.json's (mip), and what the firmware reports.

__version__ = "0.1.0"

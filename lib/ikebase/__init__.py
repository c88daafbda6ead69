# ikebase: IKEv2 pieces that both lib/qcd and lib/ike use (those two packages
# never import each other). Runs on MicroPython and CPython.
#
#   ikebase.hmac256   HMAC-SHA-256 with the padded key blocks computed once
#                     per key; constant-time comparison of MACs
#   ikebase.ikev2     the IKEv2 framing: header, payload chain (SK/SKF frame
#                     rules, one cap), Notify codec, UDP 4500 demultiplexing
#                     (RFC 3948), the numbers both sides use
#
# Modules are imported on demand: `import ikebase` costs almost nothing.

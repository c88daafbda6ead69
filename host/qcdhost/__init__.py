# qcdhost: the host side of qcd, a Python package (pyproject.toml at the
# repository root; `pip install .`, or `make venv` for an editable install).
# lib/ is the device: exactly what a board gets (qcd, ike, ...); this package
# is everything else, and installs those device packages beside it.
#
#   qcdhost.devset      the device set: the packages of lib/ (one place)
#   qcdhost.names       names of IKE numbers, the message decoder (qcdtool, qcd-peer)
#   qcdhost.keys        MemoryKeys: a key source in RAM (hosts, tests); a
#                       device's key source is qcd.store
#   qcdhost.ikeshell    the CPython I/O shell around ike.engine (qcd-peer)
#   qcdhost.need        start-up checks: a command says what it lacks before it starts
#   qcdhost.private     files that can hold a secret: created 0600, atomically
#   qcdhost.qcdtool     `qcdtool`: tokens, answers, decoding, partition images
#   qcdhost.peer        `qcd-peer`: the IKEv2 engine with QCD on a host
#   qcdhost.qcdboard    `qcdboard`: flash, deploy, diag, dump, image for ESP32 boards
#   qcdhost.esp         real ESP32 boards: board definitions (boards/), partition
#                       tables, esptool and mpremote command lines
#   qcdhost.emu         the emulators: flash (a flash partition), vboard (a board:
#                       `vboard`, WebAssembly MicroPython), hostapp (the firmware
#                       app on CPython)
#   qcdhost.strongswan  a private charon in namespaces (interop tests, bench, demo)
#   qcdhost/data        boards/ and firmware/ of the checkout, as package data
#
# qcdhost, qcdhost.keys, qcdhost.names and qcdhost.emu.flash also run on
# MicroPython: the portable suite imports them there (test support, never on
# a device in service). The version is the device's: one number for the
# package, package.json (mip) and the firmware.

from qcd import __version__  # noqa: F401

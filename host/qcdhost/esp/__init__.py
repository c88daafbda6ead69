# Host-side support for qcd on real (and virtual) ESP32 boards:
#   qcdhost.esp.boards      the board definitions under boards/ (chip, offsets, flash size)
#   qcdhost.esp.partitions  partition tables: parse, check, binary (ESP-IDF's format)
#   qcdhost.esp.esptool_cmd esptool command lines: write-flash, read-flash, merge-bin
#   qcdhost.esp.image       whole-flash images (esptool merge-bin)
#   qcdhost.esp.remote      mpremote command lines: deploy, diag, partition read-out
#   device_diag.py, device_read_partition.py  scripts mpremote runs ON the board
# `qcdboard` (qcdhost.qcdboard) is the command line over these.

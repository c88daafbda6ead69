# Host-side support for qcd on real (and virtual) ESP32 boards:
#   board.boards      the board definitions under boards/ (chip, offsets, flash size)
#   board.partitions  partition tables: parse, check, binary (ESP-IDF's format)
#   board.esptool_cmd esptool command lines: write-flash, read-flash, merge-bin
#   board.remote      mpremote command lines: deploy, diag, partition read-out
# tools/qcdboard is the command line over these.

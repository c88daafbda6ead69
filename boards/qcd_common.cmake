# Shared by the qcd boards (included last by each mpconfigboard.cmake).
# MicroPython's esp32 CMakeLists.txt includes a board's mpconfigboard.cmake
# from ports/esp32, then concatenates SDKCONFIG_DEFAULTS in list order (later
# files win) into the build's sdkconfig.combined.

get_filename_component(QCD_REPO_DIR ${CMAKE_CURRENT_LIST_DIR}/.. ABSOLUTE)

# The partition table. ESP-IDF resolves CONFIG_PARTITION_TABLE_CUSTOM_FILENAME
# relative to ports/esp32 unless it is absolute, and the sdkconfig fragments
# are copied verbatim (no variable expansion), so an out-of-tree board writes
# the absolute path into a fragment of its own at configure time. It goes last
# so it overrides sdkconfig.base's "partitions-4MiBplus.csv".
set(QCD_PARTITIONS_SDKCONFIG ${CMAKE_BINARY_DIR}/sdkconfig.qcd_partitions)
file(WRITE ${QCD_PARTITIONS_SDKCONFIG}
    "CONFIG_PARTITION_TABLE_CUSTOM=y\nCONFIG_PARTITION_TABLE_CUSTOM_FILENAME=\"${MICROPY_BOARD_DIR}/partitions-qcd.csv\"\n")
list(APPEND SDKCONFIG_DEFAULTS ${QCD_PARTITIONS_SDKCONFIG})

# Frozen code: lib/qcd, lib/ike, hmac and the port's own manifest.
# (make ... FROZEN_MANIFEST=... on the command line still overrides this.)
set(MICROPY_FROZEN_MANIFEST ${QCD_REPO_DIR}/firmware/manifest.py)

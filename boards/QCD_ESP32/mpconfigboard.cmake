# qcd on a generic ESP32 module (4 MiB flash): MicroPython's ESP32_GENERIC
# (v1.27.0 / v1.28.0) plus the `qcd` partition and frozen lib/qcd + lib/ike.
#   make -C $MICROPY_DIR/ports/esp32 BOARD_DIR=$PWD/boards/QCD_ESP32
set(IDF_TARGET esp32)

set(SDKCONFIG_DEFAULTS
    boards/sdkconfig.base
    boards/sdkconfig.ble
    ${MICROPY_BOARD_DIR}/sdkconfig.board
)

include(${MICROPY_BOARD_DIR}/../qcd_common.cmake)

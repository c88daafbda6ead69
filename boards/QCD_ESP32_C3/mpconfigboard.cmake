# qcd on a generic ESP32-C3 module (4 MiB flash): MicroPython's
# ESP32_GENERIC_C3 (v1.27.0 / v1.28.0) plus the `qcd` partition and frozen
# lib/qcd + lib/ike. RISC-V: frozen code is compiled for -march=rv32imc.
#   make -C $MICROPY_DIR/ports/esp32 BOARD_DIR=$PWD/boards/QCD_ESP32_C3
set(IDF_TARGET esp32c3)

set(SDKCONFIG_DEFAULTS
    boards/sdkconfig.base
    boards/sdkconfig.riscv
    boards/sdkconfig.ble
    ${MICROPY_BOARD_DIR}/sdkconfig.board
)

include(${MICROPY_BOARD_DIR}/../qcd_common.cmake)

# qcd on a generic ESP32-S3 module (4 MiB flash or more, quad SPIRAM optional):
# MicroPython's ESP32_GENERIC_S3 (v1.27.0 / v1.28.0) plus the `qcd` partition
# and frozen lib/qcd + lib/ike.
#   make -C $MICROPY_DIR/ports/esp32 BOARD_DIR=$PWD/boards/QCD_ESP32_S3
set(IDF_TARGET esp32s3)

set(SDKCONFIG_DEFAULTS
    boards/sdkconfig.base
    boards/sdkconfig.ble
)
# Quad SPIRAM support: boards/sdkconfig.spiram_sx in v1.27/v1.28, renamed
# boards/sdkconfig.spiram_quad after v1.28. Relative paths here are relative
# to ports/esp32, the directory CMake is configuring.
foreach(QCD_SPIRAM boards/sdkconfig.spiram_sx boards/sdkconfig.spiram_quad)
    if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${QCD_SPIRAM})
        list(APPEND SDKCONFIG_DEFAULTS ${QCD_SPIRAM})
        break()
    endif()
endforeach()
list(APPEND SDKCONFIG_DEFAULTS ${MICROPY_BOARD_DIR}/sdkconfig.board)

include(${MICROPY_BOARD_DIR}/../qcd_common.cmake)

#define MICROPY_HW_BOARD_NAME               "Generic ESP32 module with qcd"
#define MICROPY_HW_MCU_NAME                 "ESP32"

#define MICROPY_HW_BOARD_NAME               "ESP32C3 module with qcd"
#define MICROPY_HW_MCU_NAME                 "ESP32C3"

// As ESP32_GENERIC_C3: a UART REPL for modules with an external USB-UART.
#define MICROPY_HW_ENABLE_UART_REPL         (1)

# main.py of the qcd firmware: the app does the work (firmware/qcdapp.py,
# frozen into the firmware or copied to /lib). MicroPython runs this file
# after boot.py at power-on and after a hard reset; a soft reset from the raw
# REPL (what mpremote does) skips it. retry=True: a setup that fails is tried
# again on the back-off of device.setup_retry_s (docs/device.md), with no
# watchdog running meanwhile and Ctrl-C reaching the REPL.
import qcdapp

qcdapp.main(retry=True)

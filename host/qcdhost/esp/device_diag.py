# Runs ON the board (qcdboard diag, through mpremote): the QCD state as
# qcd.diag prints it. Never a secret: secrets appear as fingerprints.
#
# With the firmware app running (or stopped by mpremote's Ctrl-C) its hook
# and store are shown: qcdapp.APP. Otherwise (after a soft reset, or on a
# board without the app) the `qcd` partition is mounted read-only, which
# writes nothing: no boot record, no secret created.
# QCD_DIAG_LABEL is set by the command that runs this file.
import esp32
import machine

import qcd.diag

try:
    _label = QCD_DIAG_LABEL  # noqa: F821
except NameError:
    _label = "qcd"
try:
    import qcdapp

    _app = qcdapp.APP
except ImportError:
    _app = None
print("qcd: version %s" % qcd.__version__)
print("board: reset_cause %d" % machine.reset_cause())
if _app is not None and getattr(_app, "error", None):
    # a failed setup (firmware/qcdapp.py): the board stays up, no watchdog
    if getattr(_app, "stopped", False):
        _next = "retries stopped by diag"
    elif getattr(_app, "retry", False) and _app.retry_s:
        _next = "retrying every %s s at most" % _app.retry_s
    else:
        _next = "no retries"
    print("app: setup error after %d attempt(s): %s (%s)" % (_app.attempts, _app.error, _next))
if _app is not None and _app.store is not None:
    print("app: %s" % ("stopped by diag" if _app.state == "running" else _app.state))
    print("partition: %r" % (_app.partition,))
    qcd.diag.show(_app.hook, _app.store)
else:
    print("app: %s" % ("not started" if _app is None else _app.state))
    _p = esp32.Partition.find(esp32.Partition.TYPE_DATA, label=_label)
    if not _p:
        print("partition: none labelled %s (flash a qcd partition table: make flash BOARD=...)" % _label)
    else:
        print("partition: %r" % (_p[0],))
        from qcd import store as _qstore

        qcd.diag.show(None, _qstore.mount(_p[0], readonly=True, count_boot=False))

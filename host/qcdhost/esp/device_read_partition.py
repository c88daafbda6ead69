# Runs ON the board (qcdboard dump --repl): prints a partition as hex,
# 64 bytes a line, between markers, through esp32.Partition.readblocks.
# QCD_READ_LABEL is set by the command that runs this file.
import esp32
from binascii import hexlify

try:
    _label = QCD_READ_LABEL  # noqa: F821
except NameError:
    _label = "qcd"
_p = esp32.Partition.find(esp32.Partition.TYPE_DATA, label=_label)
if not _p:
    print("QCD-READ-ERROR no data partition labelled %s" % _label)
else:
    _size = _p[0].info()[3]
    print("QCD-READ-BEGIN %d" % _size)
    _buf = bytearray(64)
    for _off in range(0, _size, 64):
        _p[0].readblocks(0, _buf, _off)
        print(hexlify(_buf).decode())
    print("QCD-READ-END")

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
for p in (os.path.join(os.path.dirname(HERE), "lib"), HERE, os.path.join(HERE, "portable")):
    if p not in sys.path:
        sys.path.insert(0, p)
# tools/ holds flashemu, which the portable store tests import (on MicroPython
# it is copied to /lib).
if os.path.join(os.path.dirname(HERE), "tools") not in sys.path:
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))

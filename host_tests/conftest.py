import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
for p in (os.path.join(os.path.dirname(HERE), "lib"), HERE, os.path.join(HERE, "portable")):
    if p not in sys.path:
        sys.path.insert(0, p)

#!/usr/bin/env python3
"""Write (or check) package.json, the mip manifest at the repository root.

  python tools/package_json.py           write package.json
  python tools/package_json.py --check   exit 1 if package.json is stale

mip (mpremote mip install github:OWNER/REPO, or a local path to the file)
reads "urls": [device path under the install target, source], with sources
relative to package.json; and "deps": micropython-lib packages by name.
Every .py of lib/ (the device set, qcdhost.devset) is listed, so the list
is generated, not kept by hand. No micropython-lib dependency: HMAC-SHA-256 is
lib/ikebase/hmac256.py, so stock ESP32 firmware needs nothing else.
"""
import json
import os
import sys

import qcd
from qcdhost import devset

ROOT = os.path.dirname(devset.LIB)

PATH = os.path.join(ROOT, "package.json")
DEPS = []  # micropython-lib packages the device needs: none


def version():
    """The one version: lib/qcd's __version__ (the Python package's and the
    firmware's too)."""
    return qcd.__version__


def manifest():
    urls = []
    for host, dev in devset.files():
        rel = os.path.relpath(host, ROOT).replace(os.sep, "/")
        urls.append([dev[len("lib/"):], rel])
    return {"urls": urls, "deps": DEPS, "version": version()}


def text():
    return json.dumps(manifest(), indent=2) + "\n"


def main(argv):
    want = text()
    if "--check" in argv:
        try:
            with open(PATH) as f:
                have = f.read()
        except OSError:
            have = ""
        if have != want:
            print("package.json is stale: run `python tools/package_json.py`", file=sys.stderr)
            return 1
        return 0
    with open(PATH, "w") as f:
        f.write(want)
    print("wrote package.json (%d files)" % len(manifest()["urls"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

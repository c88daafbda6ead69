#!/usr/bin/env python3
"""Write (or check) package.json, the mip manifest at the repository root.

  python tools/package_json.py           write package.json
  python tools/package_json.py --check   exit 1 if package.json is stale

mip (mpremote mip install github:OWNER/REPO, or a local path to the file)
reads "urls": [device path under the install target, source], with sources
relative to package.json; and "deps": micropython-lib packages by name.
Every .py of lib/ikebase, lib/qcd and lib/ike that a device uses is listed (not the
host-only modules, board/remote.py HOST_ONLY), so the list is generated,
not kept by hand. No micropython-lib dependency: HMAC-SHA-256 is
lib/ikebase/hmac256.py, so stock ESP32 firmware needs nothing else.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from board.remote import package_files  # noqa: E402

PATH = os.path.join(ROOT, "package.json")
DEPS = []  # micropython-lib packages the device needs: none


def version():
    with open(os.path.join(ROOT, "lib", "qcd", "__init__.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=", 1)[1].strip().strip("\"'")
    return "0"


def manifest():
    urls = []
    for host, dev in package_files():
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

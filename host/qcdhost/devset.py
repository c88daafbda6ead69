# The device set: what goes onto a board. It is lib/, whole: every package
# there (a directory with __init__.py) and every .py file in it. Derived
# here, in one place; `qcdboard deploy`, `vboard --app`, package.json
# (tools/package_json.py), the .mpy build (qcdhost.mpy_build) and the tests
# read it, and firmware/manifest.py freezes the same packages whole (a test
# checks the manifest names exactly these).
import os

import qcd

# Where the device packages are: lib/ in a checkout (editable install), or
# site-packages beside qcdhost when installed from a wheel.
LIB = os.path.dirname(os.path.dirname(os.path.abspath(qcd.__file__)))
HOST_PACKAGE = "qcdhost"


def _from_metadata():
    from importlib import metadata

    try:
        top = metadata.distribution("qcd").read_text("top_level.txt") or ""
    except metadata.PackageNotFoundError:
        top = ""
    return sorted(n for n in top.split() if n != HOST_PACKAGE)


def packages():
    """The device packages, sorted: lib/'s directories with an __init__.py
    (in a checkout), or the distribution's top-level packages but qcdhost."""
    if os.path.basename(LIB) == "lib":
        return sorted(d for d in os.listdir(LIB) if os.path.isfile(os.path.join(LIB, d, "__init__.py")))
    return [p for p in _from_metadata() if os.path.isfile(os.path.join(LIB, p, "__init__.py"))]


def sources(package):
    """The .py files of one device package, sorted, as host paths."""
    out = []
    for d, dirs, files in os.walk(os.path.join(LIB, package)):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__" and not x.startswith("."))
        out += [os.path.join(d, f) for f in sorted(files) if f.endswith(".py")]
    return out


def files(pkgs=None):
    """[(host path, device path "lib/<package>/...")] of the device set (or
    of the packages named)."""
    out = []
    for pkg in packages() if pkgs is None else pkgs:
        for host in sources(pkg):
            out.append((host, "lib/" + os.path.relpath(host, LIB).replace(os.sep, "/")))
    return out


# The host modules that run on MicroPython too: test support, never device
# code (the in-RAM key source, IKE names, the flash emulator). The portable
# suite and the benchmarks copy them to /lib/qcdhost on the WebAssembly port
# (the Makefile's test-mpy lists the same files).
PORTABLE_HOST = ("__init__.py", "keys.py", "names.py", "emu/__init__.py", "emu/flash.py")


def portable_host_paths():
    """[(host path, MicroPython path)] of PORTABLE_HOST."""
    here = os.path.dirname(os.path.abspath(__file__))
    return [(os.path.join(here, *f.split("/")), "/lib/qcdhost/" + f) for f in PORTABLE_HOST]

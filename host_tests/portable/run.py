# Runs the portable suite on MicroPython (the WebAssembly port, the unix
# port, or a board). CPython runs the same files through pytest, which
# collects the unittest.TestCase classes directly.
#
#   node host/qcdhost/emu/wasm/run.mjs --path lib:/lib --path host_tests/portable:/tests \
#        host_tests/portable/run.py [MODULE...]                (plus qcdhost's portable modules in /lib)
#   micropython host_tests/portable/run.py [MODULE...]      (MICROPYPATH=lib:...)
#   make test-board PORT=/dev/ttyUSB0                        (a board, over mpremote)
#
# The suite's folder is found, in this order: the global PORTABLE_DIR (set
# before the run, e.g. `mpremote exec "PORTABLE_DIR='/sd/tests'" + run
# run.py`: mpremote runs a script from RAM, without __file__); the folder of
# this file; the first of /tests, tests, /sd/tests, /flash/tests and the
# current directory that holds portable_util.py.
#
# Prints unittest's report and one summary line
#   PORTABLE ran=N failures=F errors=E skipped=S
# and exits 1 unless every test passed. Under host/qcdhost/emu/wasm/run.mjs
# each test module runs as a top-level step, so the heap is collected
# between modules; everywhere each module and what it imported are dropped
# from sys.modules and the heap collected after it, so the suite's peak is
# one module's.
import gc
import os
import sys
import unittest


def _has_suite(d):
    try:
        ls = os.listdir(d or ".")
    except OSError:
        return False
    return "portable_util.py" in ls or "portable_util.mpy" in ls


def _find_here():
    g = globals()
    if g.get("PORTABLE_DIR"):
        return g["PORTABLE_DIR"]
    f = g.get("__file__")
    if f and "/" in f:
        d = f.rsplit("/", 1)[0]
        if _has_suite(d):
            return d
    elif f and _has_suite(""):
        return "."
    for d in ("/tests", "tests", "/sd/tests", "/flash/tests", "."):
        if _has_suite(d):
            return d
    return "/tests"


def _lazy_message_asserts():
    # micropython-lib's unittest formats "%r vs (expected) %r" before every
    # comparison, passing or not: comparing two 4 KiB blocks costs a 32 KiB
    # string, more than a board's heap has free. Format only on failure.
    T = unittest.TestCase

    def assertEqual(self, x, y, msg=""):
        if not x == y:
            self.fail(msg or "%r vs (expected) %r" % (x, y))

    def assertNotEqual(self, x, y, msg=""):
        if x == y:
            self.fail(msg or "%r not expected to be equal %r" % (x, y))

    T.assertEqual = assertEqual
    T.assertNotEqual = assertNotEqual


def _skips_in_setup(mod):
    # micropython-lib's unittest calls setUp outside its try, so a
    # skipTest() there ends the whole module: catch it in setUp and skip
    # the test the way CPython's unittest does. Every setUp also starts with
    # a collection: what the test before left (its fixtures, its garbage)
    # goes before this one allocates, so on a board's fixed heap a test
    # starts on the least fragmented heap it can have.
    T = unittest.TestCase
    for cls in list(mod.__dict__.values()):
        if not (isinstance(cls, type) and issubclass(cls, T)):
            continue
        own = "setUp" in cls.__dict__
        orig = getattr(cls, "setUp", None)  # its own, a base class's, or none

        def setUp(self, orig=orig):
            self._qcd_skip = None
            gc.collect()
            try:
                if orig is not None:
                    orig(self)
            except unittest.SkipTest as e:
                self._qcd_skip = e.args[0] if e.args else "skipped"

        cls.setUp = setUp
        if not own:
            continue
        for name in list(cls.__dict__):
            f = cls.__dict__[name]
            if name.startswith("test") and callable(f):

                def test(self, f=f):
                    if getattr(self, "_qcd_skip", None):
                        raise unittest.SkipTest(self._qcd_skip)
                    return f(self)

                setattr(cls, name, test)


MICROPYTHON = sys.implementation.name == "micropython"
if MICROPYTHON:
    _lazy_message_asserts()
    if sys.platform != "webassembly" and hasattr(gc, "threshold"):
        # Collect whenever a sixteenth of the heap has been allocated, not
        # only once it is full (a board, the unix port): a collection of a
        # full heap leaves what lives scattered over all of it, between the
        # holes of what died, and a fixed heap then has room but no piece
        # big enough. Measured on the unix port with a fixed heap: the
        # worn-block power-cut sweep needs 106 KiB this way, 116-120 without.
        # (The WebAssembly port collects only at top level and keeps its own.)
        gc.threshold(max(4096, (gc.mem_free() + gc.mem_alloc()) // 16))

HERE = _find_here()
if HERE not in sys.path:
    sys.path.append(HERE)

# Which modules: the arguments, or the global PORTABLE_MODULES (a board:
# `make test-board` runs one module per soft reset, so each starts on an
# empty heap; a module's qstrs stay in the heap until the next reset), or
# all of them. Test modules as .py or compiled to .mpy (what test-board copies).
names = sys.argv[1:] or globals().get("PORTABLE_MODULES") or sorted(set(n.rsplit(".", 1)[0] for n in os.listdir(HERE) if n.startswith("test_") and n.endswith((".py", ".mpy"))))
totals = [0, 0, 0, 0]  # ran, failures, errors, skipped


def run_module(name):
    def step():
        print("== " + name)
        before = set(sys.modules)
        try:
            mod = __import__(name)
            if MICROPYTHON:
                _skips_in_setup(mod)
            r = unittest.main(module=name)
        except Exception as e:  # a module that cannot load is one error
            print("ERROR: %s did not load: %s: %s" % (name, type(e).__name__, e))
            totals[2] += 1
        else:
            totals[0] += r.testsRun
            totals[1] += r.failuresNum
            totals[2] += r.errorsNum
            totals[3] += r.skippedNum
        # Whatever this module imported goes again (a board's heap holds
        # one test module and what it needs, not the whole suite).
        for m in set(sys.modules) - before:
            del sys.modules[m]
        gc.collect()

    return step


def finish():
    ran, failures, errors, skipped = totals
    print("PORTABLE ran=%d failures=%d errors=%d skipped=%d" % (ran, failures, errors, skipped))
    if failures or errors or not ran:
        sys.exit(1)


steps = [run_module(n) for n in names] + [finish]
try:
    _mpwasm_steps.extend(steps)  # noqa: F821 (defined by host/qcdhost/emu/wasm/run.mjs)
except NameError:
    for s in steps:
        s()

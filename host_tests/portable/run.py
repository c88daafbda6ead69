# Runs the portable suite on MicroPython (the WebAssembly port, or a board).
# CPython runs the same files through pytest, which collects the
# unittest.TestCase classes directly.
#
#   node host/qcdhost/emu/wasm/run.mjs --path lib/qcd:/lib/qcd \
#        --path host_tests/portable:/tests host_tests/portable/run.py [MODULE...]
#
# Prints unittest's report and one summary line
#   PORTABLE ran=N failures=F errors=E skipped=S
# and exits 1 unless every test passed. Under host/qcdhost/emu/wasm/run.mjs each test
# module runs as a top-level step, so the heap is collected between modules.
import os
import sys
import unittest

HERE = "/tests"
sys.path.append(HERE)

names = sys.argv[1:] or sorted(n[:-3] for n in os.listdir(HERE) if n.startswith("test_") and n.endswith(".py"))
totals = [0, 0, 0, 0]  # ran, failures, errors, skipped


def run_module(name):
    def step():
        print("== " + name)
        __import__(name)
        r = unittest.main(module=name)
        totals[0] += r.testsRun
        totals[1] += r.failuresNum
        totals[2] += r.errorsNum
        totals[3] += r.skippedNum

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

# A virtual board (vboard) for tests: started in a temporary state
# directory, driven with the real mpremote, stopped by its pid.
import os
import subprocess
import sys
import time

import support

from qcdhost import harness

VBOARD = support.VBOARD
QCDBOARD = support.QCDBOARD


class VBoard:
    def __init__(self, state_dir, board="QCD_ESP32", extra=()):
        support.need_micropython()
        self.dir = str(state_dir)
        self.board = board
        self.extra = list(extra)
        self.tty = os.path.join(self.dir, "tty")
        self.proc = None

    def start(self, timeout=60):
        log = open(os.path.join(self.dir, "vboard.log"), "ab")
        self.proc = subprocess.Popen(
            [sys.executable, VBOARD, "--dir", self.dir, "--board", self.board] + self.extra,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.islink(self.tty) and self.proc.poll() is None:
                # The link appears once the board process is started; a first
                # command also waits for its boot.
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("virtual board did not start:\n" + self.log())

    def log(self):
        try:
            with open(os.path.join(self.dir, "vboard.log")) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def power_cycle(self):
        """A new board process on the same flash image and filesystem."""
        self.stop()
        return self.start()

    def mpremote(self, *args, timeout=120):
        cmd = [sys.executable, "-m", "mpremote", "connect", self.tty] + list(args)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    def exec(self, code, timeout=120):
        """Run code on the board; its stdout, or AssertionError with both outputs."""
        p = self.mpremote("exec", code, timeout=timeout)
        if p.returncode:
            raise AssertionError("mpremote exec failed (%d):\n%s\n%s" % (p.returncode, p.stdout, p.stderr))
        return p.stdout

    def qcdboard(self, *args, timeout=300):
        cmd = [sys.executable, QCDBOARD] + list(args)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    @property
    def flash(self):
        return os.path.join(self.dir, "flash.bin")

    @property
    def fs(self):
        return os.path.join(self.dir, "fs")


class HeadlessBoard(harness.HeadlessBoard):
    """qcdhost.harness.HeadlessBoard, skipped (or failed under CI) where the
    WebAssembly port is missing."""

    def __init__(self, state_dir, extra=("--net",)):
        support.need_micropython()
        super().__init__(state_dir, extra)

# The suite's own time limit (pytest.ini: pytest-timeout): every test runs
# under one, and a test that hangs fails while the run goes on with the
# next test, so a hang costs CI minutes, not its whole 90-minute budget.
import subprocess
import sys
import time

HANG = """
import threading
import time


def test_hangs_on_an_event_nobody_sets():
    threading.Event().wait()


def test_after_the_hang():
    time.sleep(0.1)
"""


def test_every_test_runs_under_a_time_limit(request):
    cfg = request.config
    assert cfg.pluginmanager.hasplugin("timeout"), "pytest-timeout is not installed (requirements.txt)"
    assert 0 < float(cfg.getini("timeout")) <= 600
    assert cfg.getini("timeout_method") == "signal"  # "thread" would end the whole run at the first hang


def test_a_hung_test_fails_and_the_next_one_still_runs(request, tmp_path):
    (tmp_path / "test_hang.py").write_text(HANG)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout", "2", "-o", "timeout_method=" + request.config.getini("timeout_method"), "test_hang.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - t0
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert "Timeout (>2.0s)" in out, out
    assert "1 failed, 1 passed" in out, out
    assert took < 60, out

"""The accounting of `python -m bench.background` (bench/background_windows.py): each
request counts for the window its intended send time falls in, and the goal per row."""

from bench.background_windows import AFTER, DURING, QUIET, Row, Windows, goal, table


def windows_with(quiet_ms: list[float], during_ms: list[float], errors_during: int = 0) -> Windows:
    windows = Windows(70, quiet_s=10.0)
    windows.mark(started=10.5)
    for i, ms in enumerate(quiet_ms):
        windows.record(i * 0.01, ms / 1000, "ok", "usage")
    for i, ms in enumerate(during_ms):
        windows.record(11 + i * 0.01, ms / 1000, "ok", "usage")
    for i in range(errors_during):
        windows.record(12 + i * 0.01, 0.0, "HTTP 503", "usage")
    windows.mark(ended=20.0)
    return windows


def test_a_request_counts_for_the_window_of_its_intended_send_time():
    windows = Windows(70, quiet_s=10.0)
    assert windows.window(9.99) == QUIET
    assert windows.window(10.2) is None  # before the job started: neither window
    windows.mark(started=10.5)
    assert windows.window(10.5) == DURING
    assert windows.window(500.0) == DURING  # the job still running: however late
    windows.mark(ended=30.0)
    assert windows.window(30.0) == DURING
    assert windows.window(30.01) == AFTER


def test_a_late_answer_is_charged_to_the_window_it_was_due_in():
    windows = Windows(70, quiet_s=10.0)
    windows.record(9.9, 2.0, "ok", "usage")  # due in the quiet window, answered during the job
    windows.mark(started=10.0)
    windows.record(10.1, 0.01, "ok", "usage")

    assert windows.quiet.counted == 1 and 1999 < windows.quiet.max_ms < 2002
    assert windows.during.counted == 1 and windows.during.max_ms < 11
    assert windows.counted == 2  # the whole run's step has both


def test_the_goal_is_p99_within_twice_quiet_and_nothing_over_700_ms():
    assert goal(windows_with([10] * 100, [19] * 100).during, windows_with([10] * 100, []).quiet)[0]
    slow = windows_with([10] * 100, [25] * 100)
    assert goal(slow.during, slow.quiet) == (False, "p99 2.5x quiet")
    spike = windows_with([10] * 100, [10] * 999 + [800])
    assert goal(spike.during, spike.quiet) == (False, "max 800 ms")
    failing = windows_with([10] * 100, [10] * 100, errors_during=2)
    assert goal(failing.during, failing.quiet) == (False, "2 failed")


def test_the_table_has_a_quiet_row_and_the_jobs_row_with_its_verdict():
    met = Row("export", "adaptive", 1000, 10.0, 1200, windows_with([10] * 100, [12] * 100))
    stuck = Row("sweep", "off", 500, None, 20, windows_with([10] * 100, [12] * 100), "exited 1")
    text = table([met, stuck])

    assert "| export: quiet before | adaptive |" in text
    assert "| **export** | adaptive | 1,000 | 10.0 | 120 | 100 |" in text and text.count("| met |") == 1
    assert "| **sweep** | off | 500 | did not clear | – |" in text
    assert "NOT met (the job did not clear); exited 1 |" in text
    assert not stuck.met and met.met

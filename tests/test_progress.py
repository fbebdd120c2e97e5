import io

from graphrecall.common.progress import progress_bar


def test_progress_bar_is_sparse_off_a_terminal(monkeypatch):
    err = io.StringIO()  # not a tty
    monkeypatch.setattr("sys.stderr", err)
    monkeypatch.setenv("GRAPHRECALL_PROGRESS_SECONDS", "3600")
    bar = progress_bar(total=10_000, desc="x", file=err)
    assert bar.mininterval == 3600.0
    for _ in range(10_000):
        bar.update(1)
    bar.close()
    assert err.getvalue().count("\r") <= 3  # first draw, close; no per-update redraws
    assert progress_bar(enabled=False, total=3).disable

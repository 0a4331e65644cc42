"""Progress goes to stderr, only on a terminal, never under --quiet."""
import io

from click.testing import CliRunner

from callmark import progress
from tools.cli import main


class TTY(io.StringIO):
    def isatty(self):
        return True


def test_enabled_only_on_a_terminal_and_not_quiet(monkeypatch):
    monkeypatch.delenv(progress.QUIET_ENV, raising=False)
    assert progress.enabled(TTY()) and not progress.enabled(io.StringIO())
    monkeypatch.setenv(progress.QUIET_ENV, "1")
    assert not progress.enabled(TTY()) and progress.quiet()


def test_bar_draws_on_a_terminal_stderr(monkeypatch):
    monkeypatch.delenv(progress.QUIET_ENV, raising=False)
    err = TTY()
    monkeypatch.setattr("sys.stderr", err)
    assert list(progress.bar(range(3), desc="count", mininterval=0)) == [0, 1, 2]
    assert "count" in err.getvalue()
    monkeypatch.setenv(progress.QUIET_ENV, "1")
    err2 = TTY()
    monkeypatch.setattr("sys.stderr", err2)
    list(progress.bar(range(3), desc="count"))
    with progress.heartbeat("step", every_s=0.01):
        pass
    assert err2.getvalue() == ""


def test_root_quiet_flag_sets_the_environment(monkeypatch):
    monkeypatch.setenv(progress.QUIET_ENV, "")  # teardown restores the variable as it was
    r = CliRunner().invoke(main, ["-q", "numbers", "normalize", "95588"])
    assert r.exit_code == 0, r.output
    assert progress.quiet()


def test_heartbeat_reports_the_step(monkeypatch):
    monkeypatch.delenv(progress.QUIET_ENV, raising=False)
    err = TTY()
    monkeypatch.setattr("sys.stderr", err)
    import time
    with progress.heartbeat("consensus", every_s=0.02):
        time.sleep(0.1)
    assert "consensus …" in err.getvalue() and "consensus done in" in err.getvalue()


def test_reading_tags_shows_bytes_read_on_a_terminal(monkeypatch, tmp_path):
    import gzip
    import json as _json

    from trainer.ingest import read_tags
    monkeypatch.delenv(progress.QUIET_ENV, raising=False)
    rows = [{"number": f"+861380013{i:04d}", "reporter": f"r{i % 7}", "category": "fraud",
             "ts": "2026-03-02T08:00:00Z"} for i in range(3000)]
    for name, opener in (("t.jsonl", open), ("t.jsonl.gz", gzip.open)):
        with opener(tmp_path / name, "wt") as f:
            f.write("\n".join(_json.dumps(r) for r in rows) + "\n")
        err = TTY()
        monkeypatch.setattr("sys.stderr", err)
        events, report = read_tags(tmp_path / name)
        assert len(events) == 3000 and f"read {name}" in err.getvalue() and "100%" in err.getvalue()
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("number,reporter,category,ts\n" + "".join(
        f"{r['number']},{r['reporter']},{r['category']},{r['ts']}\n" for r in rows))
    err = TTY()
    monkeypatch.setattr("sys.stderr", err)
    assert len(read_tags(csv_path)[0]) == 3000 and "100%" in err.getvalue()

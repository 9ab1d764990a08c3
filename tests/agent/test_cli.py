"""The `meterline` command as users run it: a real process on a real store in a temp home."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

METERLINE = [sys.executable, "-m", "agent"]


def run(*args: str, stdin: str | None = None, home: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if home is not None:
        env["METERLINE_HOME"] = str(home)
    return subprocess.run([*METERLINE, *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=60)


def stored_calls(home: Path) -> int:
    result = run("log", "--json", "--limit", "1000", home=home)
    assert result.returncode == 0, result.stderr
    return len(json.loads(result.stdout))


CALL = {"tool": "script", "provider": "anthropic", "model": "claude-sonnet-4-5",
        "input_tokens": 1000, "output_tokens": 100}

STATUS_KEYS = {"state", "usedUsd", "usedTokens", "limitUsd", "limitTokens", "remainingUsd",
               "remainingTokens", "resetsAt", "burnRateUsdPerHour", "projectedExhaustionAt",
               "calls"}


def test_status_on_a_fresh_home(meterline_home: Path) -> None:
    line = run("status")
    assert line.returncode == 0, line.stderr
    assert line.stdout.count("\n") == 1
    assert "$0.00 today" in line.stdout
    data = json.loads(run("status", "--json").stdout)
    assert data.keys() >= STATUS_KEYS
    assert data["state"] == "ok"
    assert data["limitUsd"] is None
    assert data["remainingUsd"] is None
    assert data["calls"] == 0


def test_record_one_and_many_then_status_and_log(meterline_home: Path) -> None:
    one = run("record", stdin=json.dumps(CALL))
    assert one.returncode == 0, one.stderr
    assert one.stdout.startswith("stored 1 call ($0.0045)")
    many = run("record", "--json", stdin=json.dumps([CALL, {**CALL, "model": "mystery-1"}]))
    assert many.returncode == 0, many.stderr
    outcome = json.loads(many.stdout)
    assert (outcome["inserted"], outcome["unpriced"]) == (2, 1)
    status = json.loads(run("status", "--json").stdout)
    assert status["calls"] == 3
    assert status["usedUsd"] == pytest.approx(0.009)
    assert status["unknownCostCalls"] == 1
    assert status["usedTokens"] == 3300
    log = json.loads(run("log", "--json").stdout)
    assert [row["model"] for row in log] == ["mystery-1", "claude-sonnet-4-5",
                                             "claude-sonnet-4-5"]
    assert log[0]["cost_micro_usd"] is None
    table = run("log").stdout.splitlines()
    assert table[0].split()[:3] == ["time", "tool", "model"]
    assert "?" in table[1]


def test_record_accepts_camel_case_and_is_idempotent(meterline_home: Path) -> None:
    call = {"id": "01932c07-7d4c-7b8e-9f00-000000000001", "tool": "lsp", "provider": "openai",
            "model": "gpt-4o", "inputTokens": 10, "outputTokens": 2, "requestId": "req_9"}
    assert run("record", stdin=json.dumps(call)).returncode == 0
    again = run("record", "--json", stdin=json.dumps(call))
    assert json.loads(again.stdout)["duplicates"] == 1
    assert stored_calls(meterline_home) == 1


@pytest.mark.parametrize(("payload", "message"), [
    ("{not json", "malformed JSON"),
    ("", "malformed JSON"),
    ("42", "expected a JSON object"),
    ("[]", "empty array"),
    (json.dumps({**CALL, "provider": None}), "provider"),
    (json.dumps({k: v for k, v in CALL.items() if k != "model"}), "model: required"),
    (json.dumps({**CALL, "input_tokens": -5}), "input_tokens"),
    (json.dumps({**CALL, "output_tokens": 10**12}), "output_tokens"),
    (json.dumps({**CALL, "input_tokens": "12"}), "input_tokens"),
    (json.dumps({**CALL, "inptu_tokens": 3}), "inptu_tokens: unknown field"),
    (json.dumps({**CALL, "ts": "2026-01-01T00:00:00"}), "ts: needs a time zone"),
    (json.dumps({**CALL, "ts": "3026-01-01T00:00:00Z"}), "in the future"),
    (json.dumps({**CALL, "kind": "vibes"}), "kind"),
    (json.dumps({**CALL, "id": "not-a-uuid"}), "id: not a UUID"),
    (json.dumps([CALL, {**CALL, "input_tokens": -1}]), "call 1: input_tokens"),
])
def test_bad_input_is_refused_whole_with_one_line(meterline_home: Path, payload: str,
                                                  message: str) -> None:
    result = run("record", stdin=payload)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""
    assert stored_calls(meterline_home) == 0


def test_budget_set_show_and_remove(meterline_home: Path) -> None:
    config = meterline_home / "config.toml"
    config.write_text("# my settings\n[proxy]\nport = 8799\n")
    made = run("budget", "set", "--name", "daily", "--period", "day", "--usd", "0.01",
               "--mode", "enforce", "--timezone", "Europe/Berlin")
    assert made.returncode == 0, made.stderr
    assert "# my settings" in config.read_text()  # the user's comments survive
    run("record", stdin=json.dumps(CALL))
    shown = json.loads(run("budget", "show", "--json").stdout)
    assert shown[0]["budget"] == "daily"
    assert shown[0]["state"] == "warn" or shown[0]["percentUsed"] == pytest.approx(45.0)
    changed = run("budget", "set", "--name", "daily", "--usd", "0.004")
    assert changed.returncode == 0
    status = json.loads(run("status", "--json").stdout)
    assert (status["state"], status["exceeded"]) == ("blocked", True)
    assert status["limitUsd"] == 0.004
    assert status["remainingUsd"] == pytest.approx(-0.0005)
    assert "blocked" in run("status").stdout
    assert run("budget", "remove", "daily").returncode == 0
    assert json.loads(run("status", "--json").stdout)["budget"] is None
    assert run("budget", "remove", "daily").returncode == 2


@pytest.mark.parametrize(("args", "message"), [
    (("--period", "fortnight", "--usd", "1"), "period"),
    (("--timezone", "Mars/Olympus", "--usd", "1"), "unknown time zone"),
    (("--usd", "-3"), "limit_usd"),
    (("--warn-at", "1.5", "--usd", "1"), "warn_at"),
    ((), "set limit_usd or limit_tokens"),
])
def test_bad_budget_values_leave_the_config_alone(meterline_home: Path, args: tuple[str, ...],
                                                  message: str) -> None:
    config = meterline_home / "config.toml"
    config.write_text("[[budgets]]\nname = \"keep\"\nlimit_usd = 5.0\n")
    before = config.read_text()
    result = run("budget", "set", "--name", "new", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert config.read_text() == before


@pytest.mark.parametrize(("content", "message"), [
    ("[[budgets]\nname=1", "not valid TOML"),
    ("[[budgets]]\nname = \"x\"\nperiod = \"fortnight\"\nlimit_usd = 1.0\n", "period"),
    ("[[budgets]]\nname = \"x\"\ntimezone = \"Nowhere/City\"\nlimit_usd = 1.0\n", "time zone"),
    ("[[budgets]]\nname = \"x\"\nlimit_usd = \"ten\"\n", "limit_usd"),
    ("[proxy]\nport = 99999\n", "proxy.port"),
    ("[mystery]\n", "mystery"),
])
def test_a_bad_config_is_named_with_exit_code_2(meterline_home: Path, content: str,
                                                message: str) -> None:
    (meterline_home / "config.toml").write_text(content)
    for args in (("status",), ("status", "--json"), ("budget", "show")):
        result = run(*args)
        assert result.returncode == 2, (args, result.stdout)
        assert message in result.stderr
        assert result.stderr.count("\n") == 1
    result = run("record", stdin=json.dumps(CALL))
    assert result.returncode == 2
    assert stored_calls(meterline_home) == 0


def test_an_unreadable_config_is_named(meterline_home: Path) -> None:
    config = meterline_home / "config.toml"
    config.mkdir()  # a directory where the file should be: unreadable as a file
    result = run("status")
    assert result.returncode == 2
    assert "cannot read" in result.stderr


def test_status_notices_config_edits_at_once(meterline_home: Path) -> None:
    config = meterline_home / "config.toml"
    config.write_text("[[budgets]]\nname = \"a\"\nlimit_usd = 5.0\n")
    assert json.loads(run("status", "--json").stdout)["limitUsd"] == 5.0
    config.write_text("[[budgets]]\nname = \"a\"\nlimit_usd = 7.0\n")
    assert json.loads(run("status", "--json").stdout)["limitUsd"] == 7.0


def test_path_lists_home_config_and_database(meterline_home: Path) -> None:
    paths = json.loads(run("path", "--json").stdout)
    assert paths == {"home": str(meterline_home), "config": str(meterline_home / "config.toml"),
                     "database": str(meterline_home / "meterline.db")}


def test_up_keeps_a_live_status_line_and_stops_cleanly(meterline_home: Path) -> None:
    env = {**os.environ, "METERLINE_HOME": str(meterline_home)}
    proc = subprocess.Popen([*METERLINE, "up", "--interval", "0.2", "--proxy-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "$0.00 today" in first
        run("record", stdin=json.dumps(CALL))
        deadline = time.monotonic() + 10
        line = first
        while "1 calls" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
        assert "1 calls" in line
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "stopped" in err


CLAUDE_CODE_INPUT = {
    "model": {"display_name": "Opus"}, "workspace": {"current_dir": "/w/p"},
    "cost": {"total_cost_usd": 0.42},
    "rate_limits": {"five_hour": {"used_percentage": 38.5, "resets_at": "2099-01-01T00:00:00Z"},
                    "seven_day": {"used_percentage": 12, "resets_at": 4102444800}},
}


def test_status_shows_the_vendor_quota_claude_code_pipes_in(meterline_home: Path) -> None:
    line = run("status", stdin=json.dumps(CLAUDE_CODE_INPUT))
    assert line.returncode == 0, line.stderr
    assert line.stdout.rstrip().endswith("· anthropic 5h 38% used")
    # Kept in the store: the next status (with nothing piped in) and the JSON still show it.
    assert "anthropic 5h 38% used" in run("status", stdin="").stdout
    quota = json.loads(run("status", "--json").stdout)["vendorQuota"]
    assert {(q["name"], q["usedPercent"], q["resetsAt"]) for q in quota} == {
        ("5h", 38.5, "2099-01-01T00:00:00Z"), ("7d", 12.0, "2100-01-01T00:00:00Z")}


@pytest.mark.parametrize("piped", ["", "not json", "{}", '{"rate_limits": "nope"}',
                                   '{"rate_limits": {"five_hour": {"used_percentage": true}}}'])
def test_status_ignores_input_it_does_not_understand(meterline_home: Path, piped: str) -> None:
    line = run("status", stdin=piped)
    assert line.returncode == 0
    assert "used" not in line.stdout.split("·")[-1]


def test_a_vendor_window_that_has_reset_is_not_shown(meterline_home: Path) -> None:
    expired = {"rate_limits": {"five_hour": {"used_percentage": 99,
                                             "resets_at": "2001-01-01T00:00:00Z"}}}
    assert "99%" not in run("status", stdin=json.dumps(expired)).stdout


@pytest.mark.parametrize("args", [("record", "--bogus"), ("nosuchcommand",),
                                  ("log", "-n", "0"), ("budget", "set", "--name", "d",
                                                       "--usd", "1", "--mode", "shout"),
                                  ("status", "extra")])
def test_a_usage_error_is_one_line_with_exit_code_2(meterline_home: Path,
                                                    args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("meterline: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert "--help`)" in result.stderr  # where to look


@pytest.mark.parametrize("args", [("budget", "show"),
                                  ("budget", "set", "--name", "d", "--usd", "6"),
                                  ("import",), ("status",)])
def test_a_home_that_is_a_file_is_one_line_not_a_traceback(tmp_path: Path,
                                                           args: tuple[str, ...]) -> None:
    not_a_folder = tmp_path / "home"
    not_a_folder.write_text("a file where the home folder should be")
    result = run(*args, home=not_a_folder)
    assert result.returncode in (1, 2)
    assert result.stderr.startswith("meterline: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert not_a_folder.read_text() == "a file where the home folder should be"


def test_budget_set_run_in_parallel_keeps_every_budget(meterline_home: Path) -> None:
    env = {**os.environ, "METERLINE_HOME": str(meterline_home)}
    runs = [subprocess.Popen([*METERLINE, "budget", "set", "--name", f"b{i}", "--usd", str(i)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for i in range(1, 9)]
    assert [run.wait(60) for run in runs] == [0] * 8
    shown = json.loads(run("budget", "show", "--json").stdout)
    assert sorted(b["budget"] for b in shown) == sorted(f"b{i}" for i in range(1, 9))


def test_a_call_of_unknown_cost_is_never_shown_as_zero(meterline_home: Path) -> None:
    assert run("budget", "set", "--name", "d", "--usd", "10").returncode == 0
    unknown = {**CALL, "model": "claude-nonexistent-9"}
    stored = json.loads(run("record", "--json", stdin=json.dumps(unknown)).stdout)
    assert (stored["costMicroUsd"], stored["costText"], stored["unpriced"]) == (None, "?", 1)
    mixed = json.loads(run("record", "--json", stdin=json.dumps([CALL, unknown])).stdout)
    assert mixed["costMicroUsd"] > 0
    assert mixed["costText"].endswith("+?")
    shown = run("budget", "show")
    assert "2 calls of unknown cost not counted" in shown.stdout, shown.stdout


@pytest.mark.parametrize("args", [("status", "--json"), ("status",), ("log",)])
def test_a_reader_that_went_away_is_no_error(meterline_home: Path,
                                             args: tuple[str, ...]) -> None:
    """`meterline status --json | head -c 99`: the pipe closed before the output went."""
    assert run("record", stdin=json.dumps(CALL)).returncode == 0
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will read
    try:
        done = subprocess.run([*METERLINE, *args], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=60,
                              env={**os.environ, "METERLINE_HOME": str(meterline_home)})
    finally:
        os.close(write_end)
    assert done.stderr == ""  # no traceback, no "Exception ignored"
    assert done.returncode in ((0,) if args[0] == "status" else (0, 1))  # (click: 1)

"""Report arithmetic and the small-group rule, as pure functions (no I/O)."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server._errors import InputError
from server._reports import (
    Privacy,
    Sums,
    build_report,
    day_number,
    day_range,
    figures,
    grain_for,
    parse_group_by,
    suppress_individuals,
)
from server._tables import USAGE_SUMS

CHECKPOINTS = (30, 120, 300, 600, 900)


def sums(developers: int = 1, retained: dict[int, list[int]] | None = None,
         **values: int) -> Sums:
    usage = [0] * len(USAGE_SUMS)
    for name, value in values.items():
        usage[USAGE_SUMS.index(name)] = value
    return Sums(usage=usage, retained=retained or {}, developers=developers)


def test_figures_by_hand() -> None:
    group = sums(developers=2, calls=2, input_tokens=100, output_tokens=50,
                 cache_read_tokens=1000, cache_write_tokens=200, reasoning_tokens=20,
                 cost_micro_usd=6000, unknown_cost_calls=1,
                 offered_events=10, offered_chars=1000, offered_lines=50,
                 accepted_events=4, accepted_chars=400, accepted_lines=20,
                 committed_events=1, committed_chars=100, committed_lines=10,
                 deployed_events=1, deployed_chars=50, deployed_lines=5,
                 retained={900: [3, 300, 15], 30: [4, 380, 19]})
    result = figures(group, CHECKPOINTS, 900)

    assert result.tokens.total == 1350  # input + output + cache reads + cache writes
    assert result.tokens.reasoning == 20  # inside output, not added again
    assert result.cost_usd == 0.006
    assert result.unknown_cost_calls == 1
    assert result.acceptance_rate == 0.4
    by_checkpoint = {r.checkpoint_s: r for r in result.retention}
    assert list(by_checkpoint) == [30, 120, 300, 600, 900]
    assert by_checkpoint[900].rate_chars == 0.75
    assert by_checkpoint[900].rate_lines == 0.75
    assert by_checkpoint[30].rate_chars == 0.95
    assert by_checkpoint[120].events == 0
    assert by_checkpoint[120].rate_chars == 0.0
    assert result.per_line.tokens_per_retained_line == 90.0
    assert result.per_line.usd_per_retained_line == 0.0004
    assert result.per_line.tokens_per_committed_line == 135.0
    assert result.per_line.usd_per_committed_line == 0.0006
    assert result.per_line.usd_per_deployed_line == 0.0012
    assert result.funnel.deployed.lines == 5


def test_rates_are_null_without_a_denominator() -> None:
    result = figures(sums(calls=3, input_tokens=10, cost_micro_usd=1), CHECKPOINTS, 900)
    assert result.acceptance_rate is None
    assert all(r.rate_chars is None for r in result.retention)
    assert result.per_line.tokens_per_retained_line is None
    assert result.per_line.usd_per_committed_line is None


def test_unusual_checkpoints_are_listed_too() -> None:
    result = figures(sums(accepted_chars=10, accepted_lines=1, retained={45: [1, 5, 1]}),
                     CHECKPOINTS, 900)
    assert [r.checkpoint_s for r in result.retention] == [30, 45, 120, 300, 600, 900]


def _developer_groups(names: list[str]) -> dict[tuple[str | None, ...], Sums]:
    return {(name,): sums(calls=i + 1, input_tokens=10 * (i + 1))
            for i, name in enumerate(names)}


def test_small_group_merges_everyone_who_did_not_opt_in() -> None:
    groups = _developer_groups(["alice", "bob", "carol"])
    privacy = Privacy(min_group_size=5, visible=frozenset({"bob"}))
    shown, hidden = suppress_individuals(["developer"], groups, population=3, privacy=privacy)
    assert hidden == 2
    assert set(shown) == {("bob",), (None,)}
    assert shown[(None,)].developers == 2
    assert shown[(None,)].usage[USAGE_SUMS.index("calls")] == 1 + 3


def test_large_group_shows_every_developer() -> None:
    groups = _developer_groups(["a", "b", "c", "d", "e"])
    shown, hidden = suppress_individuals(["developer"], groups, population=5,
                                         privacy=Privacy(5, frozenset()))
    assert hidden == 0
    assert shown == groups


def test_rule_applies_only_to_per_developer_rows_and_leads() -> None:
    groups = {("claude",): sums(developers=2, calls=4)}
    assert suppress_individuals(["model"], groups, 2, Privacy(5, frozenset())) == (groups, 0)
    people = _developer_groups(["a", "b"])
    assert suppress_individuals(["developer"], people, 2, None) == (people, 0)


def test_merging_keeps_other_dimensions_apart() -> None:
    groups = {("alice", "2026-01-01"): sums(calls=1), ("bob", "2026-01-01"): sums(calls=2),
              ("alice", "2026-01-02"): sums(calls=4)}
    shown, hidden = suppress_individuals(["developer", "day"], groups, 2,
                                         Privacy(5, frozenset()))
    assert hidden == 2
    calls = USAGE_SUMS.index("calls")
    assert shown[(None, "2026-01-01")].usage[calls] == 3
    assert shown[(None, "2026-01-02")].usage[calls] == 4


names = st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f", "g"]), unique=True,
                 min_size=1)


@given(names=names, visible=st.sets(st.sampled_from(["a", "b", "c", "d", "e", "f", "g"])),
       min_size=st.integers(1, 8))
def test_suppression_never_loses_or_invents_usage(names: list[str], visible: set[str],
                                                  min_size: int) -> None:
    groups = _developer_groups(names)
    shown, hidden = suppress_individuals(["developer"], groups, len(names),
                                         Privacy(min_size, frozenset(visible)))
    for index in range(len(USAGE_SUMS)):
        assert (sum(s.usage[index] for s in shown.values())
                == sum(s.usage[index] for s in groups.values()))
    shown_names = {key[0] for key in shown if key[0] is not None}
    if len(names) < min_size:
        assert shown_names <= visible
        assert hidden == len(set(names) - visible)
    else:
        assert shown_names == set(names)
        assert hidden == 0


def test_report_sorts_rows_with_unknown_last() -> None:
    groups = {(None,): sums(calls=1), ("zeta",): sums(calls=1), ("alpha",): sums(calls=1)}
    report = build_report(dims=["language"], groups=groups, total=sums(calls=3),
                          days=(day_number(date(2026, 1, 1)), day_number(date(2026, 1, 31))),
                          checkpoints=CHECKPOINTS, headline_s=900, privacy=None)
    assert [row.group["language"] for row in report.rows] == ["alpha", "zeta", None]
    assert (report.from_, report.to) == ("2026-01-01", "2026-01-31")
    assert report.total.calls == 3


def test_each_grouping_reads_the_coarsest_grain_that_answers_it() -> None:
    assert grain_for(["day"]) == "developer"
    assert grain_for(["team", "developer", "day"]) == "developer"
    assert grain_for(["model"]) == "model"
    assert grain_for(["team", "language"]) == "language"
    assert grain_for(["tool", "model"]) == "tool+model"
    assert grain_for(["language", "developer", "model"]) == "model+lang"
    assert grain_for(["tool", "language", "day"]) == "tool+lang"
    assert grain_for(["tool", "model", "language"]) == "all"


def test_group_by_parsing() -> None:
    assert parse_group_by("team,day") == ("team", "day")
    assert parse_group_by(" model ") == ("model",)
    for bad in ("", "colour", "day,day", "day,team,model,tool"):
        with pytest.raises(InputError) as caught:
            parse_group_by(bad)
        assert caught.value.field == "group_by"


def test_day_range() -> None:
    today = date(2026, 3, 31)
    assert day_range(None, None, today) == (day_number(date(2026, 3, 2)), day_number(today))
    assert day_range(date(2026, 1, 1), date(2026, 1, 1), today) == (20454, 20454)
    with pytest.raises(InputError) as caught:
        day_range(date(2026, 2, 1), date(2026, 1, 1), today)
    assert caught.value.field == "from"

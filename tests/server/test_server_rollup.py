"""Rollup deltas as pure functions, checked against a slow reference sum."""

from __future__ import annotations

from collections import defaultdict

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from server import _tables as t
from server._rollup import (
    CallRow,
    DeployedRow,
    SuggestionRow,
    day_of,
    deployed_from_commit,
    deployed_from_event,
    retention_deltas,
    usage_deltas,
)
from server._tables import USAGE_SUMS

small = st.integers(0, 1000)
label = st.sampled_from(["a", "b"])
calls = st.builds(
    CallRow, id=st.uuids().map(str), developer_id=st.integers(1, 3),
    ts_ms=st.integers(0, 10 * 86_400_000), day=st.integers(0, 3), device_id=st.none(),
    tool=label, source=st.just("proxy"), provider=st.just("p"), model=label,
    kind=st.just("chat"), input_tokens=small, output_tokens=small, cache_read_tokens=small,
    cache_write_tokens=small, cache_write_1h_tokens=st.just(0), reasoning_tokens=st.just(0),
    cost_micro_usd=st.none() | small, estimated=st.booleans(), latency_ms=st.none(),
    status=st.sampled_from(["ok", "error", "blocked"]), language=st.none() | label,
    workspace=st.none(), request_id=st.none())
suggestions = st.builds(
    SuggestionRow, id=st.uuids().map(str), developer_id=st.integers(1, 3),
    ts_ms=st.just(0), day=st.integers(0, 3),
    type=st.sampled_from(["offered", "accepted", "rejected", "retained", "committed",
                          "deployed"]),
    suggestion_id=st.just("s"), call_id=st.none(), chars=small, lines=small,
    checkpoint_s=st.sampled_from([30, 900]), commit_sha=st.none(), environment=st.none(),
    device_id=st.none(), tool=st.none() | label, model=st.none() | label,
    language=st.none() | label, workspace=st.none())


@given(st.lists(calls, max_size=30), st.lists(suggestions, max_size=30))
def test_usage_deltas_match_a_reference_sum(call_rows: list[CallRow],
                                            suggestion_rows: list[SuggestionRow]) -> None:
    expected: dict[tuple[object, ...], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for c in call_rows:
        row = expected[(c.day, c.developer_id, c.tool, c.model, c.language or "")]
        row["calls"] += 1
        for name in ("input_tokens", "output_tokens", "cache_read_tokens",
                     "cache_write_tokens"):
            row[name] += getattr(c, name)
        row["cost_micro_usd"] += c.cost_micro_usd or 0
        row["unknown_cost_calls"] += c.cost_micro_usd is None
        row["error_calls"] += c.status == "error"
        row["estimated_calls"] += c.estimated
    for s in suggestion_rows:
        if s.type in ("retained", "deployed"):
            continue  # retention has its own rollup; deployed counts via deployed_lines
        row = expected[(s.day, s.developer_id, s.tool or "", s.model or "", s.language or "")]
        row[f"{s.type}_events"] += 1
        row[f"{s.type}_chars"] += s.chars
        row[f"{s.type}_lines"] += s.lines

    deltas = usage_deltas(call_rows, suggestion_rows)

    assert [key for key, _ in deltas] == sorted(key for key, _ in deltas)
    got = {key[1:]: {name: value for name, value in zip(USAGE_SUMS, values, strict=True)
                     if value}
           for key, values in deltas if key[0] == "all"}
    want = {key: {name: value for name, value in row.items() if value}
            for key, row in expected.items()}
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in want.items() if v}


@given(st.lists(calls, max_size=20), st.lists(suggestions, max_size=20))
def test_every_grain_adds_up_to_the_finest(call_rows: list[CallRow],
                                            suggestion_rows: list[SuggestionRow]) -> None:
    for deltas in (usage_deltas(call_rows, suggestion_rows), retention_deltas(suggestion_rows)):
        finest = [(key, values) for key, values in deltas if key[0] == "all"]
        for grain, kept in (("developer", ()), ("model", (4,)), ("tool", (3,)),
                            ("language", (5,))):
            expected: dict[tuple[object, ...], list[int]] = {}
            for key, values in finest:
                coarse = tuple(key[i] if i in (1, 2, *kept) or i > 5 else ""
                               for i in range(1, len(key)))
                acc = expected.setdefault(coarse, [0] * len(values))
                expected[coarse] = [a + b for a, b in zip(acc, values, strict=True)]
            got = {key[1:]: values for key, values in deltas if key[0] == grain}
            assert got == expected, grain


@given(st.lists(suggestions, max_size=40))
def test_retention_deltas_count_retained_rows_per_checkpoint(rows: list[SuggestionRow]
                                                             ) -> None:
    deltas = {k: v for k, v in retention_deltas(rows) if k[0] == "developer"}
    retained = [r for r in rows if r.type == "retained"]
    assert sum(v[0] for v in deltas.values()) == len(retained)
    assert sum(v[1] for v in deltas.values()) == sum(r.chars for r in retained)
    assert {key[-1] for key in deltas} <= {30, 900}


def test_deployed_lines_count_through_their_own_rows() -> None:
    committed = SuggestionRow("id", 7, 0, 100, "committed", "s-9", None, 80, 4, None,
                              "abc1234", None, None, "tool", "model", None, None)
    done = deployed_from_commit(committed, "prod", 105)
    assert (done.developer_id, done.day, done.environment, done.lines) == (7, 105, "prod", 4)
    deltas = dict(usage_deltas((), (), [done]))
    assert set(deltas) == {("developer", 105, 7, "", "", ""), ("model", 105, 7, "", "model", ""),
                           ("tool", 105, 7, "tool", "", ""), ("language", 105, 7, "", "", ""),
                           ("tool+model", 105, 7, "tool", "model", ""),
                           ("tool+lang", 105, 7, "tool", "", ""),
                           ("model+lang", 105, 7, "", "model", ""),
                           ("all", 105, 7, "tool", "model", "")}
    values = deltas[("all", 105, 7, "tool", "model", "")]
    at = USAGE_SUMS.index("deployed_events")
    assert values[at:at + 3] == [1, 80, 4]

    client_event = msgspec.structs.replace(committed, type="deployed", commit_sha=None,
                                           environment="prod")
    assert deployed_from_event(client_event).commit_sha == ""
    # A deployed suggestion event adds nothing by itself: only its deployed_lines row does.
    assert usage_deltas((), [client_event]) == []


def test_day_of_is_utc_days() -> None:
    assert day_of(0) == 0
    assert day_of(86_400_000 - 1) == 0
    assert day_of(86_400_000) == 1


def test_rows_line_up_with_their_tables() -> None:
    for row, table in ((CallRow, t.calls), (SuggestionRow, t.suggestion_events),
                       (DeployedRow, t.deployed_lines)):
        assert row.__struct_fields__ == tuple(column.name for column in table.columns)

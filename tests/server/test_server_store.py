"""The storage seam, on SQLite and on PostgreSQL with the same tests."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from server_factory import (
    CALL_TOKENS,
    Org,
    call,
    expected_totals,
    make_org,
    now_iso,
    random_events,
    suggestion,
)
from server_support import BACKENDS, PgDatabases

from server import _tables as t
from server._access import SYSTEM
from server._db import create_engine, current_revision, downgrade, head_revision, upgrade
from server._errors import Conflict, Forbidden, InputError, NotFound
from server._settings import database_url
from server._store import Store
from server._wire import BudgetIn, EventBatch, MemberIn, MemberPatch


def as_batch(*events: dict[str, Any]) -> EventBatch:
    return msgspec.json.decode(msgspec.json.encode({"events": list(events)}), type=EventBatch)


async def member_id(store: Store, name: str) -> int:
    async with store.read() as conn:
        return int(await conn.scalar(sa.select(t.members.c.id)
                                     .where(t.members.c.name == name)))


async def rollup_totals(store: Store, grain: str = "developer") -> dict[str, int]:
    usage = t.usage_daily
    async with store.read() as conn:
        row = (await conn.execute(
            sa.select(*(sa.func.coalesce(sa.func.sum(usage.c[n]), 0) for n in t.USAGE_SUMS))
            .where(usage.c.grain == grain))).one()
    return dict(zip(t.USAGE_SUMS, map(int, row), strict=True))


async def count(store: Store, table: sa.Table) -> int:
    async with store.read() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(table)))


# -------------------------------------------------------------------------- migrations


@pytest.fixture(params=BACKENDS)
def blank_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'blank.db'}"
    databases: PgDatabases = request.getfixturevalue("pg_databases")
    return databases.create(request.getfixturevalue("pg_url"), migrated=False)


async def test_migrations_build_the_declared_schema_from_blank(blank_db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = create_engine(database_url(blank_db_url))
    try:
        assert await current_revision(engine) is None
        await asyncio.gather(upgrade(engine), upgrade(engine))  # concurrent starts: once
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as conn:
            differences = await conn.run_sync(lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_server_default": True}),
                t.metadata))
        assert differences == []
        await downgrade(engine, "base")
        assert await current_revision(engine) is None
        await upgrade(engine)
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()


# ------------------------------------------------------------------------------ ingest


async def test_the_same_event_twice_counts_once(store: Store, org: Org) -> None:
    alice = await member_id(store, "alice")
    events = [call(), call(cost_micro_usd=None), suggestion("offered")]
    first = await store.ingest(alice, as_batch(*events))
    again = await store.ingest(alice, as_batch(*events, events[0]))
    assert (first.inserted, first.duplicates) == (3, 0)
    assert (again.inserted, again.duplicates) == (0, 4)
    totals = await rollup_totals(store)
    assert totals["calls"] == 2
    assert totals["unknown_cost_calls"] == 1
    assert totals["cost_micro_usd"] == 2500
    assert totals["offered_events"] == 1


async def test_a_request_id_counts_once_per_developer(store: Store, org: Org) -> None:
    alice, bob = await member_id(store, "alice"), await member_id(store, "bob")
    proxy = call(request_id="req_1", source="proxy")
    imported = call(request_id="req_1", source="import:claude-code")  # same call, other path
    assert (await store.ingest(alice, as_batch(proxy, imported))).inserted == 1
    assert (await store.ingest(alice, as_batch(call(request_id="req_1")))).inserted == 0
    assert (await store.ingest(bob, as_batch(call(request_id="req_1")))).inserted == 1
    assert await count(store, t.calls) == 2


async def test_rollups_equal_the_unique_raw_events(store: Store, org: Org) -> None:
    rng = random.Random(5)
    alice = await member_id(store, "alice")
    events = random_events(rng, 600)
    sent = 0
    for _ in range(12):  # overlapping batches: each event is sent about three times
        start = rng.randrange(len(events))
        chunk = [events[(start + k) % len(events)] for k in range(150)]
        result = await store.ingest(alice, as_batch(*chunk))
        sent += result.inserted
    result = await store.ingest(alice, as_batch(*events))  # and then all of them once more
    sent += result.inserted
    want = expected_totals(events)
    assert sent == sum(want[k] for k in ("calls",)) + sum(
        v for k, v in want.items() if k.endswith("_events"))

    for grain in t.GRAINS:  # every grain adds up to the same totals
        totals = await rollup_totals(store, grain)
        for name in ("calls", *CALL_TOKENS, "cost_micro_usd", "unknown_cost_calls",
                     "error_calls", "offered_events", "accepted_chars", "rejected_lines",
                     "committed_lines"):
            assert totals[name] == want[name], (grain, name)
    async with store.read() as conn:
        retained = {row.checkpoint_s: row for row in await conn.execute(
            sa.select(t.retention_daily.c.checkpoint_s,
                      sa.func.sum(t.retention_daily.c.events).label("events"),
                      sa.func.sum(t.retention_daily.c.chars).label("chars"))
            .where(t.retention_daily.c.grain == "all")
            .group_by(t.retention_daily.c.checkpoint_s))}
        # The rollups agree with the raw rows they came from.
        raw = (await conn.execute(sa.select(
            sa.func.count(), *(sa.func.sum(t.calls.c[n]) for n in CALL_TOKENS)))).one()
    for checkpoint in (30, 900):
        assert retained[checkpoint].events == want[f"retained_{checkpoint}_events"]
        assert retained[checkpoint].chars == want[f"retained_{checkpoint}_chars"]
    assert list(raw) == [totals["calls"], *(totals[n] for n in CALL_TOKENS)]


async def test_concurrent_overlapping_batches_count_exactly_once(store: Store, org: Org
                                                                 ) -> None:
    rng = random.Random(11)
    ids = {name: await member_id(store, name) for name in ("alice", "bob")}
    events = {name: random_events(rng, 400) for name in ids}
    jobs = []
    for name, developer in ids.items():
        for _ in range(8):
            start = rng.randrange(400)
            chunk = [events[name][(start + k) % 400] for k in range(200)]
            jobs.append(store.ingest(developer, as_batch(*chunk)))
        jobs.append(store.ingest(developer, as_batch(*events[name])))
    rng.shuffle(jobs)
    results = await asyncio.gather(*jobs)

    want = expected_totals(events["alice"]) + expected_totals(events["bob"])
    unique = want["calls"] + sum(v for k, v in want.items() if k.endswith("_events"))
    assert sum(r.inserted for r in results) == unique
    totals = await rollup_totals(store)
    for name in ("calls", *CALL_TOKENS, "cost_micro_usd", "offered_lines", "committed_chars"):
        assert totals[name] == want[name], name


# ------------------------------------------------------------------------- deployments


async def deployed_lines(store: Store) -> int:
    return (await rollup_totals(store))["deployed_lines"]


async def test_ci_marks_committed_lines_deployed_once(store: Store, org: Org) -> None:
    alice = await member_id(store, "alice")
    await store.ingest(alice, as_batch(
        suggestion("committed", "s1", lines=7, commit="ABCDEF1"),
        suggestion("committed", "s2", lines=3, commit="abcdef1"),
        suggestion("committed", "s3", lines=100, commit="1234567")))
    core = await store.team_for_report("core")
    result = await store.record_deployment(environment="prod", commits=["abcdef1"],
                                           ts_ms=1_800_000_000_000, team_id=core,
                                           token_id=None)
    assert (result.suggestions, result.lines) == (2, 10)
    again = await store.record_deployment(environment="prod", commits=["ABCDEF1"],
                                          ts_ms=1_800_000_000_000, team_id=core, token_id=None)
    assert (again.suggestions, again.lines) == (0, 0)
    staging = await store.record_deployment(environment="staging", commits=["abcdef1"],
                                            ts_ms=1_800_000_000_000, team_id=None,
                                            token_id=None)
    assert staging.lines == 10  # another environment counts on its own
    assert await deployed_lines(store) == 20


async def test_a_team_ci_token_matches_only_its_teams_commits(store: Store, org: Org) -> None:
    carol = await member_id(store, "carol")  # in team web
    await store.ingest(carol, as_batch(suggestion("committed", lines=5, commit="abcdef1")))
    core = await store.team_for_report("core")
    result = await store.record_deployment(environment="prod", commits=["abcdef1"],
                                           ts_ms=1_800_000_000_000, team_id=core,
                                           token_id=None)
    assert result.suggestions == 0
    assert await deployed_lines(store) == 0


async def test_a_commit_synced_after_its_deployment_still_counts(store: Store, org: Org
                                                                 ) -> None:
    alice = await member_id(store, "alice")
    core = await store.team_for_report("core")
    await store.record_deployment(environment="prod", commits=["feed123"],
                                  ts_ms=1_800_000_000_000, team_id=core, token_id=None)
    late = suggestion("committed", lines=9, commit="feed123")
    await store.ingest(alice, as_batch(late))
    await store.ingest(alice, as_batch(late))  # a duplicate adds nothing
    assert await deployed_lines(store) == 9
    # The client may also say so itself: the same suggestion, commit and environment.
    await store.ingest(alice, as_batch(suggestion("deployed", lines=9, commit="feed123",
                                                  environment="prod")))
    assert await deployed_lines(store) == 9


async def test_deployments_racing_commits_count_each_suggestion_once(store: Store, org: Org
                                                                     ) -> None:
    alice = await member_id(store, "alice")
    commits = [f"{i:07x}" for i in range(1, 41)]
    events = [suggestion("committed", f"s{i}", lines=1, commit=c)
              for i, c in enumerate(commits)]
    jobs: list[Any] = [store.ingest(alice, as_batch(e)) for e in events]
    jobs += [store.record_deployment(environment="prod", commits=commits[i:i + 5],
                                     ts_ms=1_800_000_000_000, team_id=None, token_id=None)
             for i in range(0, 40, 5)]
    random.Random(3).shuffle(jobs)
    await asyncio.gather(*jobs)
    assert await deployed_lines(store) == 40
    assert await count(store, t.deployed_lines) == 40


async def test_ingests_of_commits_do_not_wait_for_each_other_only_for_deployments(
        pg_test_url: str) -> None:
    """PostgreSQL (SQLite has one writer at a time): the deployment-matching lock is shared
    among ingests and exclusive for CI's reports. With it held as an ingest holds it,
    another ingest goes through at once, and a deployment report waits until that
    transaction ends."""
    import asyncpg

    from server._ingest import _DEPLOY_LOCK

    db_url = pg_test_url
    store = Store(create_engine(database_url(db_url)))
    await make_org(store)
    alice = await member_id(store, "alice")
    holder = await asyncpg.connect("postgresql://" + db_url.split("://", 1)[1])
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT pg_advisory_xact_lock_shared($1)", _DEPLOY_LOCK)
        ingest = store.ingest(alice, as_batch(suggestion("committed", "s1", lines=3,
                                                         commit="abc1234")))
        assert (await asyncio.wait_for(ingest, 10)).inserted == 1
        report = asyncio.ensure_future(store.record_deployment(
            environment="prod", commits=["abc1234"], ts_ms=1_800_000_000_000, team_id=None,
            token_id=None))
        await asyncio.sleep(0.5)
        assert not report.done()  # waits for the ingest that holds the lock
        await transaction.commit()
        await asyncio.wait_for(report, 10)
        assert await deployed_lines(store) == 3
    finally:
        await holder.close()
        await store.close()


# ---------------------------------------------------------------------- auth and admin


async def test_tokens_authenticate_until_revoked(store: Store, org: Org) -> None:
    alice = await store.authenticate(org.tokens["alice"])
    assert alice is not None
    assert (alice.name, alice.role) == ("alice", "developer")
    assert alice.team_ids == frozenset({await store.team_for_report("core")})
    ci = await store.authenticate(org.tokens["ci"])
    assert ci is not None
    assert ci.kind == "ci"
    assert ci.member_id is None

    forged = org.tokens["alice"][:-4] + ("AAAA" if not org.tokens["alice"].endswith("AAAA")
                                         else "BBBB")
    assert await store.authenticate(forged) is None
    assert await store.authenticate(org.tokens["alice"].replace("mlt_", "mlc_")) is None
    assert await store.authenticate("") is None

    await store.revoke_token(SYSTEM, alice.token_id or "")
    assert await store.authenticate(org.tokens["alice"]) is None
    async with store.read() as conn:  # only hashes are stored
        stored = list(await conn.scalars(sa.select(t.tokens.c.secret_sha256)))
    assert all(org.tokens["bob"].split("_", 2)[2] != value for value in stored)


async def test_a_disabled_member_cannot_authenticate(store: Store, org: Org) -> None:
    await store.update_member(SYSTEM, "bob", MemberPatch(disabled=True))
    assert await store.authenticate(org.tokens["bob"]) is None
    await store.update_member(SYSTEM, "bob", MemberPatch(disabled=False))
    assert await store.authenticate(org.tokens["bob"]) is not None


async def test_first_admin_once_and_last_admin_kept(store: Store, org: Org) -> None:
    with pytest.raises(Conflict):
        await store.create_first_admin("another")
    with pytest.raises(Conflict):
        await store.update_member(SYSTEM, "admin", MemberPatch(role="developer"))
    await store.update_member(SYSTEM, "lena", MemberPatch(role="admin"))
    demoted = await store.update_member(SYSTEM, "admin", MemberPatch(role="developer"))
    assert demoted.role == "developer"


async def test_names_are_unique(store: Store, org: Org) -> None:
    with pytest.raises(Conflict):
        await store.create_team(SYSTEM, "core")
    with pytest.raises(Conflict):
        await store.create_member(SYSTEM, MemberIn(name="alice"))
    with pytest.raises(NotFound):
        await store.create_member(SYSTEM, MemberIn(name="dora", teams=["nope"]))


async def test_leads_manage_their_own_teams_only(store: Store, org: Org) -> None:
    lena = await store.authenticate(org.tokens["lena"])
    assert lena is not None
    created = await store.create_member(lena, MemberIn(name="dan", teams=["core"]))
    assert created.member.teams == ["core"]
    with pytest.raises(Forbidden):
        await store.create_member(lena, MemberIn(name="eve", teams=["web"]))
    with pytest.raises(Forbidden):
        await store.add_to_team(lena, "web", "dan")
    with pytest.raises(Forbidden):
        await store.create_ci_token(lena, None, "ci")
    assert {m.name for m in (await store.list_members(lena)).members} == {
        "lena", "alice", "bob", "dan"}


async def test_budgets_set_replace_and_apply(store: Store, org: Org) -> None:
    await store.set_budget(SYSTEM, BudgetIn(scope="team", team="core", name="daily",
                                            limit_usd=50, mode="enforce"))
    first = await store.set_budget(SYSTEM, BudgetIn(scope="developer", developer="alice",
                                                    name="daily", limit_tokens=1_000_000,
                                                    period="5h", timezone="Europe/Paris"))
    replaced = await store.set_budget(SYSTEM, BudgetIn(scope="developer", developer="alice",
                                                       name="daily", limit_usd=7.5))
    assert replaced.id == first.id
    assert replaced.limit_usd == 7.5
    await store.set_budget(SYSTEM, BudgetIn(scope="developer", developer="carol",
                                            limit_usd=1))

    alice = await store.authenticate(org.tokens["alice"])
    assert alice is not None
    mine = (await store.effective_budgets(alice)).budgets
    assert [(b.scope, b.name, b.limit_usd, b.limit_tokens) for b in mine] == [
        ("developer", "daily", 7.5, None), ("team", "daily", 50.0, None)]
    assert mine[1].mode == "enforce"
    assert mine[1].warn_at == 0.8

    lena = await store.authenticate(org.tokens["lena"])
    assert lena is not None
    seen = {(b.scope, b.team or b.developer) for b in (await store.list_budgets(lena)).budgets}
    assert seen == {("team", "core"), ("developer", "alice")}
    with pytest.raises(Forbidden):
        await store.set_budget(lena, BudgetIn(scope="team", team="web", limit_usd=1))
    with pytest.raises(InputError):
        await store.set_budget(SYSTEM, BudgetIn(scope="team", team="core", period="fortnight",
                                                limit_usd=1))
    with pytest.raises(InputError):
        await store.set_budget(SYSTEM, BudgetIn(scope="team", team="core"))
    await store.delete_budget(SYSTEM, first.id)
    assert len((await store.effective_budgets(alice)).budgets) == 1


async def test_deleting_a_team_removes_its_budgets_and_ci_tokens(store: Store, org: Org
                                                                 ) -> None:
    await store.set_budget(SYSTEM, BudgetIn(scope="team", team="core", limit_usd=5))
    await store.delete_team(SYSTEM, "core")
    assert await store.authenticate(org.tokens["ci"]) is None
    assert (await store.list_budgets(SYSTEM)).budgets == []
    alice = await store.authenticate(org.tokens["alice"])
    assert alice is not None
    assert alice.team_ids == frozenset()


async def test_ping(store: Store) -> None:
    assert await store.ping()


async def test_report_sums_count_developers_in_every_query_shape(store: Store, org: Org
                                                                 ) -> None:
    from server._access import report_scope
    from server._reports import day_number, day_range

    async def send(name: str, days_ago: int, model: str, tool: str, language: str) -> None:
        await store.ingest(await member_id(store, name), as_batch(call(
            ts=now_iso(days_ago), model=model, tool=tool, language=language,
            request_id=None)))

    await send("alice", 0, "m1", "t1", "py")
    await send("alice", 1, "m2", "t2", "go")
    await send("bob", 0, "m1", "t1", "go")
    await send("carol", 0, "m2", "t1", "py")
    today = datetime.now(UTC).date()
    days = day_range(None, today, today)
    day0, day1 = (today.isoformat(), (today - timedelta(days=1)).isoformat())
    expected = {
        ("model",): {("m1",): 2, ("m2",): 2},
        ("tool", "language"): {("t1", "py"): 2, ("t2", "go"): 1, ("t1", "go"): 1},
        ("day",): {(day0,): 3, (day1,): 1},
        ("team",): {("core",): 2, ("web",): 1},
        ("team", "model"): {("core", "m1"): 2, ("core", "m2"): 1, ("web", "m2"): 1},
        ("developer",): {("alice",): 1, ("bob",): 1, ("carol",): 1},
        ("developer", "language"): {("alice", "py"): 1, ("alice", "go"): 1, ("bob", "go"): 1,
                                    ("carol", "py"): 1},
    }
    for dims, developers in expected.items():
        groups, total, _ = await store.outcome_sums(dims, report_scope(SYSTEM), days)
        assert {key: sums.developers for key, sums in groups.items()} == developers, dims
        assert total.developers == 3
        assert sum(sums.usage[0] for sums in groups.values()) == 4  # one team each here
    lena = await store.authenticate(org.tokens["lena"])
    assert lena is not None
    groups, total, _ = await store.outcome_sums(("model",), report_scope(lena), days)
    assert {key: sums.developers for key, sums in groups.items()} == {("m1",): 2, ("m2",): 1}
    assert total.developers == 2
    assert day_number(today) == days[1]


async def test_a_connection_lost_under_asyncpg_is_a_database_error(store: Store) -> None:
    """Ingest talks to asyncpg directly on PostgreSQL: its connection errors must still
    become SQLAlchemy's (the app answers those with 503 and Retry-After, not 500)."""
    import asyncpg

    async def work(_conn: Any) -> None:
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")

    with pytest.raises(sa.exc.OperationalError):
        await store.write(work)

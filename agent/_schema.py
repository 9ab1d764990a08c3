"""The store's schema as named, ordered migrations, each applied once in its own transaction.

Applied migrations are recorded in ``_migrations``; ``PRAGMA user_version`` mirrors their
count so that a reader can tell in one cheap call whether anything is pending. Add a
migration by appending to ``MIGRATIONS``; never edit one that has shipped.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable

#: Width of the budget rollup's buckets. Every modern UTC offset is a multiple of 15 minutes,
#: so the start of a day, week or month in any zone falls on a bucket boundary.
BUCKET_MS = 900_000
HOUR_MS = 3_600_000
#: A second, coarser level of the budget rollup (UTC days): a month sums ~30 of these plus
#: the 15-minute buckets between local and UTC midnight.
DAY_MS = 86_400_000
BUSY_TIMEOUT_MS = 5_000


def _initial(db: sqlite3.Connection) -> None:
    statements = [
        """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
        """CREATE TABLE calls (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            device_id TEXT NOT NULL,
            ts INTEGER NOT NULL,
            tool TEXT NOT NULL,
            source TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            kind TEXT NOT NULL,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            cache_read_tokens INTEGER NOT NULL,
            cache_write_tokens INTEGER NOT NULL,
            cache_write_1h_tokens INTEGER NOT NULL,
            reasoning_tokens INTEGER NOT NULL,
            cost_micro_usd INTEGER,
            estimated INTEGER NOT NULL,
            latency_ms INTEGER,
            status TEXT NOT NULL,
            language TEXT,
            workspace TEXT,
            request_id TEXT,
            -- A plain column (not a generated one) so that calls_ts covers the edge sums.
            total_tokens INTEGER NOT NULL CHECK (total_tokens = input_tokens + output_tokens
                + cache_read_tokens + cache_write_tokens)
        )""",
        # The same provider call reaching us by two paths (proxy and a log importer) counts once.
        "CREATE UNIQUE INDEX calls_request_id ON calls(request_id) WHERE request_id IS NOT NULL",
        # Covering for the ragged edges of a budget window: those sums never touch the table.
        "CREATE INDEX calls_ts ON calls(ts, total_tokens, cost_micro_usd)",
        # Budget rollup: what budgets and burn rates sum instead of scanning calls.
        """CREATE TABLE usage_15m (
            bucket INTEGER PRIMARY KEY,
            calls INTEGER NOT NULL,
            tokens INTEGER NOT NULL,
            cost_micro_usd INTEGER NOT NULL,
            unknown_cost_calls INTEGER NOT NULL
        )""",
        """CREATE TABLE usage_1d (
            day INTEGER PRIMARY KEY,
            calls INTEGER NOT NULL,
            tokens INTEGER NOT NULL,
            cost_micro_usd INTEGER NOT NULL,
            unknown_cost_calls INTEGER NOT NULL
        )""",
        # Breakdown rollup for the dashboard: by hour, tool, provider and model.
        """CREATE TABLE usage_hourly (
            hour INTEGER NOT NULL,
            tool TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            calls INTEGER NOT NULL,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            cache_read_tokens INTEGER NOT NULL,
            cache_write_tokens INTEGER NOT NULL,
            cost_micro_usd INTEGER NOT NULL,
            unknown_cost_calls INTEGER NOT NULL,
            PRIMARY KEY (hour, tool, provider, model)
        ) WITHOUT ROWID""",
        f"""CREATE TRIGGER calls_rollup AFTER INSERT ON calls BEGIN
            INSERT INTO usage_15m VALUES (
                NEW.ts - NEW.ts % {BUCKET_MS}, 1, NEW.total_tokens,
                COALESCE(NEW.cost_micro_usd, 0), NEW.cost_micro_usd IS NULL)
            ON CONFLICT(bucket) DO UPDATE SET
                calls = calls + 1,
                tokens = tokens + excluded.tokens,
                cost_micro_usd = cost_micro_usd + excluded.cost_micro_usd,
                unknown_cost_calls = unknown_cost_calls + excluded.unknown_cost_calls;
            INSERT INTO usage_1d VALUES (
                NEW.ts - NEW.ts % {DAY_MS}, 1, NEW.total_tokens,
                COALESCE(NEW.cost_micro_usd, 0), NEW.cost_micro_usd IS NULL)
            ON CONFLICT(day) DO UPDATE SET
                calls = calls + 1,
                tokens = tokens + excluded.tokens,
                cost_micro_usd = cost_micro_usd + excluded.cost_micro_usd,
                unknown_cost_calls = unknown_cost_calls + excluded.unknown_cost_calls;
            INSERT INTO usage_hourly VALUES (
                NEW.ts - NEW.ts % {HOUR_MS}, NEW.tool, NEW.provider, NEW.model, 1,
                NEW.input_tokens, NEW.output_tokens, NEW.cache_read_tokens,
                NEW.cache_write_tokens, COALESCE(NEW.cost_micro_usd, 0),
                NEW.cost_micro_usd IS NULL)
            ON CONFLICT(hour, tool, provider, model) DO UPDATE SET
                calls = calls + 1,
                input_tokens = input_tokens + excluded.input_tokens,
                output_tokens = output_tokens + excluded.output_tokens,
                cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
                cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,
                cost_micro_usd = cost_micro_usd + excluded.cost_micro_usd,
                unknown_cost_calls = unknown_cost_calls + excluded.unknown_cost_calls;
        END""",
        """CREATE TABLE suggestion_events (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            device_id TEXT NOT NULL,
            ts INTEGER NOT NULL,
            suggestion_id TEXT NOT NULL,
            call_id TEXT,
            type TEXT NOT NULL,
            chars INTEGER NOT NULL,
            lines INTEGER NOT NULL,
            checkpoint_s INTEGER,
            commit_id TEXT,
            environment TEXT,
            tool TEXT,
            model TEXT,
            language TEXT,
            workspace TEXT
        )""",
        "CREATE INDEX suggestion_events_suggestion ON suggestion_events(suggestion_id)",
        "CREATE INDEX suggestion_events_ts ON suggestion_events(ts)",
        """CREATE TABLE outcomes_hourly (
            hour INTEGER NOT NULL,
            type TEXT NOT NULL,
            checkpoint_s INTEGER NOT NULL,
            events INTEGER NOT NULL,
            chars INTEGER NOT NULL,
            lines INTEGER NOT NULL,
            PRIMARY KEY (hour, type, checkpoint_s)
        ) WITHOUT ROWID""",
        f"""CREATE TRIGGER suggestion_rollup AFTER INSERT ON suggestion_events BEGIN
            INSERT INTO outcomes_hourly VALUES (
                NEW.ts - NEW.ts % {HOUR_MS}, NEW.type, COALESCE(NEW.checkpoint_s, 0), 1,
                NEW.chars, NEW.lines)
            ON CONFLICT(hour, type, checkpoint_s) DO UPDATE SET
                events = events + 1,
                chars = chars + excluded.chars,
                lines = lines + excluded.lines;
        END""",
        # Estimates held by calls in flight, so concurrent callers cannot all pass a budget.
        """CREATE TABLE reservations (
            id TEXT PRIMARY KEY,
            cost_micro_usd INTEGER NOT NULL,
            tokens INTEGER NOT NULL,
            created_ms INTEGER NOT NULL,
            expires_ms INTEGER NOT NULL
        )""",
        # Sync outbox: events with seq above last_seq are still to be sent.
        """CREATE TABLE sync_state (
            stream TEXT PRIMARY KEY,
            last_seq INTEGER NOT NULL DEFAULT 0,
            last_success_ms INTEGER,
            last_error TEXT,
            last_error_ms INTEGER
        )""",
        "INSERT INTO sync_state (stream) VALUES ('calls'), ('suggestion_events')",
        # The budgets in force: mirrored from config.toml, or pulled from the team server.
        """CREATE TABLE budgets (
            source TEXT NOT NULL,
            name TEXT NOT NULL,
            period TEXT NOT NULL,
            limit_usd REAL,
            limit_tokens INTEGER,
            warn_at REAL NOT NULL,
            mode TEXT NOT NULL,
            timezone TEXT,
            week_starts TEXT NOT NULL,
            scope TEXT NOT NULL,
            position INTEGER NOT NULL,
            PRIMARY KEY (source, name)
        )""",
        # What providers say of their own quota (rate-limit headers, a tool's status data).
        """CREATE TABLE vendor_quota (
            provider TEXT NOT NULL,
            name TEXT NOT NULL,
            quota_limit INTEGER,
            remaining INTEGER,
            used_percent REAL,
            resets_at_ms INTEGER,
            observed_ms INTEGER NOT NULL,
            PRIMARY KEY (provider, name)
        )""",
    ]
    for statement in statements:
        db.execute(statement)


def _import_cursors(db: sqlite3.Connection) -> None:
    # How far each tool log has been imported. Local only: paths never leave the machine.
    db.execute("""CREATE TABLE import_cursors (
        path TEXT PRIMARY KEY,
        file_id TEXT NOT NULL,
        offset INTEGER NOT NULL,
        state TEXT,
        updated_ms INTEGER NOT NULL
    )""")


def _accepted_lines(db: sqlite3.Connection) -> None:
    # Fingerprints of accepted lines, to recognise them in commits. Local only, never synced:
    # they are derived from code. ``commit_id`` is set once a commit has claimed the line.
    db.execute("""CREATE TABLE accepted_lines (
        suggestion_id TEXT NOT NULL,
        line_hash TEXT NOT NULL,
        ts INTEGER NOT NULL,
        commit_id TEXT,
        PRIMARY KEY (suggestion_id, line_hash)
    ) WITHOUT ROWID""")
    db.execute("CREATE INDEX accepted_lines_hash ON accepted_lines(line_hash, ts)")


def _rollups_after_commit(db: sqlite3.Connection) -> None:
    # The calls' rollups are no longer kept by a trigger in the transaction that stores a
    # call (three more pages written on the path of every metered response): ``roll_up``
    # folds the calls past ``rolled_up_seq`` into them afterwards, and readers add those
    # calls themselves (``agent._queries``). Everything stored so far was rolled up by the
    # trigger.
    db.execute("DROP TRIGGER calls_rollup")
    db.execute("""CREATE TABLE rollup_state (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        rolled_up_seq INTEGER NOT NULL
    )""")
    db.execute("INSERT INTO rollup_state SELECT 0, COALESCE(MAX(seq), 0) FROM calls")


def _import_matches(db: sqlite3.Connection) -> None:
    # A call read from a tool's log that is one the proxy already stored under another id
    # (Codex's log has no request id to match by): the log's copy is not stored, and this
    # remembers which stored call it stands for, so that one stored call stands for one log
    # call only. Local only, never synced.
    db.execute("""CREATE TABLE import_matches (
        call_id TEXT PRIMARY KEY,
        imported_id TEXT NOT NULL UNIQUE,
        ts INTEGER NOT NULL
    ) WITHOUT ROWID""")


Migration = tuple[str, Callable[[sqlite3.Connection], None]]

MIGRATIONS: list[Migration] = [
    ("0001_initial", _initial),
    ("0002_import_cursors", _import_cursors),
    ("0003_accepted_lines", _accepted_lines),
    ("0004_rollups_after_commit", _rollups_after_commit),
    ("0005_import_matches", _import_matches),
]

#: The calls not yet in the rollups are those with ``seq`` above this (a scalar subquery:
#: read in the same statement, so in the same snapshot, as the rollups it completes).
UNROLLED = "seq > (SELECT rolled_up_seq FROM rollup_state WHERE id = 0)"

def _roll_up_buckets(table: str, key: str, width_ms: int, sign: str = "") -> str:
    """Fold calls ``seq`` in ``(?1, ?2]`` into a rollup of fixed-width time buckets (with
    ``sign`` "-": take them out of it)."""
    return f"""INSERT INTO {table}
        SELECT ts - ts % {width_ms}, {sign}COUNT(*), {sign}SUM(total_tokens),
               {sign}SUM(COALESCE(cost_micro_usd, 0)), {sign}SUM(cost_micro_usd IS NULL)
        FROM calls WHERE seq > ?1 AND seq <= ?2 GROUP BY 1
        ON CONFLICT({key}) DO UPDATE SET
            calls = calls + excluded.calls,
            tokens = tokens + excluded.tokens,
            cost_micro_usd = cost_micro_usd + excluded.cost_micro_usd,
            unknown_cost_calls = unknown_cost_calls + excluded.unknown_cost_calls"""


def _roll_up_statements(sign: str = "") -> list[str]:
    return [
        _roll_up_buckets("usage_15m", "bucket", BUCKET_MS, sign),
        _roll_up_buckets("usage_1d", "day", DAY_MS, sign),
        f"""INSERT INTO usage_hourly
        SELECT ts - ts % {HOUR_MS}, tool, provider, model, {sign}COUNT(*),
               {sign}SUM(input_tokens), {sign}SUM(output_tokens), {sign}SUM(cache_read_tokens),
               {sign}SUM(cache_write_tokens), {sign}SUM(COALESCE(cost_micro_usd, 0)),
               {sign}SUM(cost_micro_usd IS NULL)
        FROM calls WHERE seq > ?1 AND seq <= ?2 GROUP BY 1, 2, 3, 4
        ON CONFLICT(hour, tool, provider, model) DO UPDATE SET
            calls = calls + excluded.calls,
            input_tokens = input_tokens + excluded.input_tokens,
            output_tokens = output_tokens + excluded.output_tokens,
            cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
            cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,
            cost_micro_usd = cost_micro_usd + excluded.cost_micro_usd,
            unknown_cost_calls = unknown_cost_calls + excluded.unknown_cost_calls""",
    ]


_ROLL_UP = _roll_up_statements()
_ROLL_OUT = _roll_up_statements("-")


def rolled_up(db: sqlite3.Connection, seq: int) -> bool:
    """Whether the call ``seq`` is in the rollups already."""
    done: int = db.execute("SELECT rolled_up_seq FROM rollup_state WHERE id = 0").fetchone()[0]
    return seq <= done


def roll_out(db: sqlite3.Connection, seq: int) -> None:
    """Take the rolled-up call ``seq`` out of the rollups (before it changes; ``roll_in``
    puts it back after), by the same statements that fold calls in."""
    for statement in _ROLL_OUT:
        db.execute(statement, (seq - 1, seq))


def roll_in(db: sqlite3.Connection, seq: int) -> None:
    for statement in _ROLL_UP:
        db.execute(statement, (seq - 1, seq))


def roll_up(db: sqlite3.Connection) -> bool:
    """Fold the calls stored since the last roll-up into the rollups (False: there were none).

    Run inside a write transaction (it reads where the last one stopped under the write
    lock, so two processes never fold the same call twice)."""
    done = db.execute("SELECT rolled_up_seq FROM rollup_state WHERE id = 0").fetchone()[0]
    top = db.execute("SELECT MAX(seq) FROM calls").fetchone()[0]
    if top is None or top <= done:
        return False
    for statement in _ROLL_UP:
        db.execute(statement, (done, top))
    db.execute("UPDATE rollup_state SET rolled_up_seq = ? WHERE id = 0", (top,))
    return True


def connect(path: str | os.PathLike[str], *, timeout_ms: int = BUSY_TIMEOUT_MS
            ) -> sqlite3.Connection:
    """A connection in autocommit mode (we BEGIN ourselves) with the pragmas every user needs."""
    db = sqlite3.connect(path, isolation_level=None, timeout=timeout_ms / 1000,
                         check_same_thread=False)
    apply_pragmas(db, timeout_ms)
    return db


def pragma_statements(timeout_ms: int = BUSY_TIMEOUT_MS) -> list[str]:
    return [
        f"PRAGMA busy_timeout = {int(timeout_ms)}",
        # NORMAL in WAL mode survives a killed process; only a power cut can lose the last
        # commits, and that trade buys an order of magnitude in write rate.
        "PRAGMA synchronous = NORMAL",
        "PRAGMA temp_store = MEMORY",
    ]


def apply_pragmas(db: sqlite3.Connection, timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
    for statement in pragma_statements(timeout_ms):
        db.execute(statement)


def migrate(path: str | os.PathLike[str]) -> list[str]:
    """Bring the database at ``path`` up to date; return the names of migrations applied.

    Safe to run from several processes at once: each migration runs under the write lock
    and re-checks what is applied first.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    db = connect(path)
    try:
        if db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS):
            return []
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("CREATE TABLE IF NOT EXISTS _migrations "
                   "(name TEXT PRIMARY KEY, applied_at_ms INTEGER NOT NULL)")
        applied_now = []
        for index, (name, step) in enumerate(MIGRATIONS, start=1):
            db.execute("BEGIN IMMEDIATE")
            try:
                done = db.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone()
                if not done:
                    step(db)
                    db.execute("INSERT INTO _migrations VALUES (?, ?)",
                               (name, int(time.time() * 1000)))
                    applied_now.append(name)
                db.execute(f"PRAGMA user_version = {index}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return applied_now
    finally:
        db.close()


def applied(path: str | os.PathLike[str]) -> list[str]:
    db = connect(path)
    try:
        return [row[0] for row in db.execute("SELECT name FROM _migrations ORDER BY name")]
    finally:
        db.close()

"""The ``/api/v1`` routes: each parses, authorizes (through the store's operations), calls,
and formats. The rules live in ``_access``, ``_reports`` and the store."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from server import _access, _wire
from server._errors import Forbidden, InputError
from server._http import AnyCaller, Caller, body_doc, read_body, read_json, reply, responses, store
from server._reports import Privacy, Report, build_report, day_range, parse_group_by
from server._settings import Settings
from server._tokens import ID_PATTERN
from server._txn import now_ms

router = APIRouter(prefix="/api/v1")
TeamPath = Annotated[str, Path(pattern=_wire.NAME_PATTERN, max_length=64, examples=["core"],
                               description="A team's name")]
NamePath = Annotated[str, Path(pattern=_wire.NAME_PATTERN, max_length=64, examples=["alice"],
                               description="A member's (developer's) name")]


def _settings(request: Request) -> Settings:
    value = request.app.state.settings
    assert isinstance(value, Settings)
    return value


# ---------------------------------------------------------------------------- events


@router.post("/events", tags=["events"], response_model=None,
             summary="Send a batch of events (idempotent by event id)",
             openapi_extra=body_doc(_wire.EventBatch),
             responses=responses(_wire.IngestResult, 400, 413))
async def post_events(request: Request, who: Caller) -> Response:
    """At most 5,000 events and 4 MiB. The same event twice counts once; a batch that
    fails validation stores nothing, and the error names the field and the event's index."""
    developer_id = _access.require_member(who)
    raw = await read_body(request, _settings(request).max_body_bytes)
    batch = _wire.decode(raw, _wire.EventBatch)
    _wire.check_events(batch, now_ms())
    for index, event in enumerate(batch.events):
        if event.developer is not None and event.developer != who.name:
            raise Forbidden("events of another developer: send your own only",
                                    field="developer", index=index)
    result = await store(request).ingest(developer_id, batch)
    request.app.state.metrics.count_events(result.inserted, result.duplicates)
    return reply(result)


@router.post("/deployments", tags=["events"], response_model=None,
             summary="CI: these commits reached an environment",
             openapi_extra=body_doc(_wire.DeploymentIn),
             responses=responses(_wire.DeploymentResult, 400, 413))
async def post_deployments(request: Request, who: AnyCaller) -> Response:
    """Marks the committed lines of ``commits`` as deployed (each suggestion counts once per
    environment). A CI token of a team matches only that team's developers' commits."""
    _access.require_deployer(who)
    spec = await read_json(request, _wire.DeploymentIn)
    ts_ms = now_ms() if spec.ts is None else _wire.to_ms(spec.ts)
    if not _wire.MIN_TS_MS <= ts_ms <= now_ms() + _wire.MAX_CLOCK_SKEW_MS:
        raise InputError("not a plausible time", field="ts")
    team_id = next(iter(who.team_ids)) if who.kind == "ci" and who.team_ids else None
    result = await store(request).record_deployment(
        environment=spec.environment, commits=spec.commits, ts_ms=ts_ms, team_id=team_id,
        token_id=who.token_id)
    return reply(result)


# -------------------------------------------------------------------------------- me


@router.get("/me", tags=["me"], response_model=None, summary="Who this token belongs to",
            responses=responses(_wire.Me))
async def get_me(request: Request, who: Caller) -> Response:
    return reply(await store(request).me(who))


@router.put("/me/sharing", tags=["me"], response_model=None,
            summary="Opt in (or out) of per-developer rows in leads' reports",
            openapi_extra=body_doc(_wire.SharingIn),
            responses=responses(_wire.Me, 400, 413))
async def put_sharing(request: Request, who: Caller) -> Response:
    _access.require_member(who)
    spec = await read_json(request, _wire.SharingIn)
    return reply(await store(request).set_sharing(who, spec.share_individual))


@router.get("/me/budget", tags=["me"], response_model=None,
            summary="The caller's effective budgets (own and teams')",
            responses=responses(_wire.MyBudgets))
async def get_my_budget(request: Request, who: Caller) -> Response:
    return reply(await store(request).effective_budgets(who))


# --------------------------------------------------------------------------- reports


@router.get("/reports/outcomes", tags=["reports"], response_model=None,
            summary="Funnel and outcome-per-token figures, grouped",
            responses=responses(Report, 404))
async def get_outcomes(
        request: Request, who: Caller,
        from_: Annotated[str | None, Query(alias="from", pattern=_DAY, examples=["2026-01-01"],
                                           json_schema_extra={"format": "date"},
                                           description="First UTC day (default: to - 29)")]
        = None,
        to: Annotated[str | None, Query(pattern=_DAY, json_schema_extra={"format": "date"},
                                        description="Last UTC day (default: today)")] = None,
        group_by: Annotated[str, Query(
            max_length=64, pattern=r"^[a-z,]+$",
            description="One to three of developer, team, model, tool, language, day, "
                        "comma-separated")] = "day",
        team: Annotated[str | None, Query(pattern=_wire.NAME_PATTERN,
                                          description="Only this team")] = None,
        developer: Annotated[str | None, Query(pattern=_wire.NAME_PATTERN,
                                               description="Only this developer")] = None,
) -> Response:
    """Developers read their own figures; leads their teams' (per-developer rows only for
    groups of at least the minimum size, or developers who opted in); admins everything."""
    dims = parse_group_by(group_by)
    days = day_range(_day(from_, "from"), _day(to, "to"), datetime.now(UTC).date())
    settings = _settings(request)
    db = store(request)
    team_id = None if team is None else await db.team_for_report(team)
    developer_id, developer_teams, developer_shares = (None, frozenset[int](), False)
    if developer is not None:
        developer_id, developer_teams, developer_shares = await db.member_for_report(developer)
    scope = _access.report_scope(who, team_id=team_id, developer_id=developer_id,
                                 developer_team_ids=developer_teams,
                                 developer_shares=developer_shares)
    groups, total, sharing = await db.outcome_sums(dims, scope, days)
    privacy = None
    if scope.suppress_individuals:
        visible = sharing | ({who.name} if who.name else set())
        privacy = Privacy(settings.min_group_size, frozenset(visible))
    return reply(build_report(dims=dims, groups=groups, total=total, days=days,
                              checkpoints=settings.checkpoints,
                              headline_s=settings.headline_checkpoint_s, privacy=privacy))


_DAY = r"^\d{4}-\d{2}-\d{2}$"


def _day(text: str | None, field: str) -> date | None:
    """An ISO date (YYYY-MM-DD) only: no timestamps, no other spellings."""
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InputError(f"not a date: {text!r} (use YYYY-MM-DD)", field=field) from None


# ----------------------------------------------------------------------------- teams


@router.get("/teams", tags=["admin"], response_model=None,
            summary="Teams (admins: all; others: their own) with their members",
            responses=responses(_wire.TeamList))
async def get_teams(request: Request, who: Caller) -> Response:
    return reply(await store(request).list_teams(who))


@router.post("/teams", tags=["admin"], response_model=None, status_code=201,
             summary="Create a team (admin)", openapi_extra=body_doc(_wire.TeamIn),
             responses=responses(_wire.TeamOut, 400, 409, 413, status=201))
async def post_team(request: Request, who: Caller) -> Response:
    _access.require_admin(who)
    spec = await read_json(request, _wire.TeamIn)
    return reply(await store(request).create_team(who, spec.name), 201)


@router.delete("/teams/{team}", tags=["admin"], response_model=None,
               summary="Delete a team, its budgets and CI tokens (admin)",
               responses=responses(_wire.Deleted, 404))
async def delete_team(request: Request, who: Caller, team: TeamPath) -> Response:
    return reply(await store(request).delete_team(who, team))


@router.put("/teams/{team}/members/{name}", tags=["admin"], response_model=None,
            summary="Add a member to a team (admin, or a lead of it for developers)",
            responses=responses(_wire.TeamOut, 404))
async def put_team_member(request: Request, who: Caller, team: TeamPath,
                          name: NamePath) -> Response:
    return reply(await store(request).add_to_team(who, team, name))


@router.delete("/teams/{team}/members/{name}", tags=["admin"], response_model=None,
               summary="Remove a member from a team",
               responses=responses(_wire.TeamOut, 404))
async def delete_team_member(request: Request, who: Caller, team: TeamPath,
                             name: NamePath) -> Response:
    return reply(await store(request).remove_from_team(who, team, name))


# --------------------------------------------------------------------------- members


@router.get("/members", tags=["admin"], response_model=None,
            summary="Members (admins: all; leads: their teams')",
            responses=responses(_wire.MemberList))
async def get_members(request: Request, who: Caller) -> Response:
    return reply(await store(request).list_members(who))


@router.post("/members", tags=["admin"], response_model=None, status_code=201,
             summary="Create a member and their first token (shown once)",
             openapi_extra=body_doc(_wire.MemberIn),
             responses=responses(_wire.MemberCreated, 400, 404, 409, 413, status=201))
async def post_member(request: Request, who: Caller) -> Response:
    _access.require_lead_or_admin(who)
    spec = await read_json(request, _wire.MemberIn)
    return reply(await store(request).create_member(who, spec), 201)


@router.patch("/members/{name}", tags=["admin"], response_model=None,
              summary="Change a member's role, opt-in or disabled flag (admin)",
              openapi_extra=body_doc(_wire.MemberPatch),
              responses=responses(_wire.MemberOut, 400, 404, 409, 413))
async def patch_member(request: Request, who: Caller, name: NamePath) -> Response:
    patch = await read_json(request, _wire.MemberPatch)
    return reply(await store(request).update_member(who, name, patch))


@router.post("/members/{name}/tokens", tags=["admin"], response_model=None, status_code=201,
             summary="A new token for a member (yourself, or one you manage)",
             openapi_extra=body_doc(_wire.TokenIn),
             responses=responses(_wire.NewToken, 400, 404, 413, status=201))
async def post_member_token(request: Request, who: Caller, name: NamePath) -> Response:
    spec = await read_json(request, _wire.TokenIn)
    return reply(await store(request).issue_token(who, name, spec.label), 201)


# ---------------------------------------------------------------------------- tokens


@router.post("/ci-tokens", tags=["admin"], response_model=None, status_code=201,
             summary="A CI token for a team (or, admins, for every team)",
             openapi_extra=body_doc(_wire.CiTokenIn),
             responses=responses(_wire.NewToken, 400, 404, 413, status=201))
async def post_ci_token(request: Request, who: Caller) -> Response:
    _access.require_lead_or_admin(who)
    spec = await read_json(request, _wire.CiTokenIn)
    return reply(await store(request).create_ci_token(who, spec.team, spec.label), 201)


@router.get("/tokens", tags=["admin"], response_model=None,
            summary="Tokens you may see (never their secrets)",
            responses=responses(_wire.TokenList))
async def get_tokens(request: Request, who: Caller) -> Response:
    return reply(await store(request).list_tokens(who))


@router.delete("/tokens/{token_id}", tags=["admin"], response_model=None,
               summary="Revoke a token (yours, or one you manage)",
               responses=responses(_wire.Revoked, 404))
async def delete_token(request: Request, who: Caller,
                       token_id: Annotated[str, Path(pattern=ID_PATTERN)]) -> Response:
    return reply(await store(request).revoke_token(who, token_id))


# --------------------------------------------------------------------------- budgets


@router.get("/budgets", tags=["budgets"], response_model=None,
            summary="Budgets you manage (admins: all; leads: their teams')",
            responses=responses(_wire.BudgetList))
async def get_budgets(request: Request, who: Caller) -> Response:
    return reply(await store(request).list_budgets(who))


@router.put("/budgets", tags=["budgets"], response_model=None,
            summary="Set a budget (create, or replace the one with this scope, owner, name)",
            openapi_extra=body_doc(_wire.BudgetIn),
            responses=responses(_wire.BudgetRecord, 400, 404, 413))
async def put_budget(request: Request, who: Caller) -> Response:
    _access.require_lead_or_admin(who)
    spec = await read_json(request, _wire.BudgetIn)
    return reply(await store(request).set_budget(who, spec))


@router.delete("/budgets/{budget_id}", tags=["budgets"], response_model=None,
               summary="Remove a budget", responses=responses(_wire.Deleted, 404))
async def delete_budget(request: Request, who: Caller,
                        budget_id: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> Response:
    return reply(await store(request).delete_budget(who, budget_id))

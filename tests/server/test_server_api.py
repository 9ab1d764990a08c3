"""The HTTP API in-process (httpx.ASGITransport), on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from server_factory import Org, call, suggestion

from server._wire import MAX_BATCH_EVENTS

API_ROUTES = [("POST", "/api/v1/events"), ("POST", "/api/v1/deployments"),
              ("GET", "/api/v1/me"), ("PUT", "/api/v1/me/sharing"),
              ("GET", "/api/v1/me/budget"), ("GET", "/api/v1/reports/outcomes"),
              ("GET", "/api/v1/teams"), ("POST", "/api/v1/teams"),
              ("DELETE", "/api/v1/teams/core"), ("PUT", "/api/v1/teams/core/members/alice"),
              ("DELETE", "/api/v1/teams/core/members/alice"), ("GET", "/api/v1/members"),
              ("POST", "/api/v1/members"), ("PATCH", "/api/v1/members/alice"),
              ("POST", "/api/v1/members/alice/tokens"), ("POST", "/api/v1/ci-tokens"),
              ("GET", "/api/v1/tokens"), ("DELETE", "/api/v1/tokens/0123456789ab"),
              ("GET", "/api/v1/budgets"), ("PUT", "/api/v1/budgets"),
              ("DELETE", "/api/v1/budgets/1")]


async def post_events(client: httpx.AsyncClient, org: Org, who: str,
                      *events: dict[str, Any]) -> httpx.Response:
    return await client.post("/api/v1/events", json={"events": list(events)},
                             headers=org.auth(who))


async def report(client: httpx.AsyncClient, org: Org, who: str, **params: str
                 ) -> dict[str, Any]:
    response = await client.get("/api/v1/reports/outcomes", params=params,
                                headers=org.auth(who))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def error_of(response: httpx.Response) -> dict[str, Any]:
    detail: dict[str, Any] = response.json()["error"]
    assert set(detail) == {"field", "index", "message"}
    assert detail["message"]
    return detail


# ------------------------------------------------------------------------------- auth


def test_every_api_route_is_listed_here(client: httpx.AsyncClient) -> None:
    """Keeps the auth tests below honest when a route is added."""
    from server._api import router

    declared = {(method, route.path) for route in router.routes
                for method in getattr(route, "methods", ())}
    listed = {(method, re.sub(r"/(core|alice|0123456789ab|1)(?=/|$)", "/{x}", path))
              for method, path in API_ROUTES}
    assert {(m, re.sub(r"\{[a-z_]+\}", "{x}", p)) for m, p in declared} == listed


@pytest.mark.parametrize(("method", "path"), API_ROUTES)
async def test_no_token_no_access(client: httpx.AsyncClient, org: Org, method: str,
                                  path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer nonsense"},
                    {"Authorization": "Basic YWRtaW46YWRtaW4="},
                    {"Authorization": org.auth("alice")["Authorization"][:-3] + "xyz"}):
        response = await client.request(method, path, headers=headers, json={})
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert error_of(response)["field"] == "authorization"


@pytest.mark.parametrize(("method", "path"), [r for r in API_ROUTES
                                              if r[1] != "/api/v1/deployments"])
async def test_ci_tokens_only_report_deployments(client: httpx.AsyncClient, org: Org,
                                                 method: str, path: str) -> None:
    response = await client.request(method, path, headers=org.auth("ci"), json={})
    assert response.status_code == 403, response.text


async def test_a_revoked_token_stops_working(client: httpx.AsyncClient, org: Org) -> None:
    assert (await client.get("/api/v1/me", headers=org.auth("bob"))).status_code == 200
    tokens = (await client.get("/api/v1/tokens", headers=org.auth("bob"))).json()["tokens"]
    assert [t["member"] for t in tokens] == ["bob"]
    assert all("token" not in t for t in tokens)  # secrets are never listed
    revoked = await client.delete(f"/api/v1/tokens/{tokens[0]['id']}", headers=org.auth("bob"))
    assert revoked.status_code == 200
    assert (await client.get("/api/v1/me", headers=org.auth("bob"))).status_code == 401


# ----------------------------------------------------------------------------- events


async def test_events_are_idempotent(client: httpx.AsyncClient, org: Org) -> None:
    events = [call(), call(request_id="req_9"), suggestion("offered")]
    first = await post_events(client, org, "alice", *events)
    assert first.status_code == 200
    assert first.json() == {"inserted": 3, "duplicates": 0}
    second = await post_events(client, org, "alice", *events,
                               call(request_id="req_9"))  # same call, another path
    assert second.json() == {"inserted": 0, "duplicates": 4}
    assert (await report(client, org, "alice"))["total"]["calls"] == 2


async def test_a_bad_event_rejects_the_whole_batch(client: httpx.AsyncClient, org: Org
                                                   ) -> None:
    response = await post_events(client, org, "alice", call(), call(), suggestion("offered"),
                                 call(input_tokens=-5))
    assert response.status_code == 422
    assert error_of(response) | {"message": ""} == {"field": "input_tokens", "index": 3,
                                                   "message": ""}
    total = (await report(client, org, "alice"))["total"]
    assert total["calls"] == 0
    assert total["funnel"]["offered"]["events"] == 0


async def test_text_can_never_be_stored(client: httpx.AsyncClient, org: Org) -> None:
    for sneaky in (call(prompt="def secret(): ..."), suggestion("accepted", text="x = 1"),
                   call(workspace="/home/alice/acme-secret")):
        response = await post_events(client, org, "alice", call(), sneaky)
        assert response.status_code == 422
        assert error_of(response)["index"] == 1


async def test_events_of_another_developer_are_refused(client: httpx.AsyncClient, org: Org
                                                       ) -> None:
    response = await post_events(client, org, "alice", call(developer="alice"),
                                 call(developer="bob"))
    assert response.status_code == 403
    assert (error_of(response)["field"], error_of(response)["index"]) == ("developer", 1)
    ok = await post_events(client, org, "alice", call(developer="alice"))
    assert ok.json()["inserted"] == 1


async def test_batches_are_bounded(client: httpx.AsyncClient, org: Org) -> None:
    small = call()
    too_many = await post_events(client, org, "alice", *([small] * (MAX_BATCH_EVENTS + 1)))
    assert too_many.status_code == 413
    assert "5000" in error_of(too_many)["message"]

    huge = json.dumps({"events": [call(device_id="d" * 200, tool="t" * 200, model="m" * 200)
                                  for _ in range(4500)]}).encode()
    assert len(huge) > 4 * 2**20
    too_big = await client.post("/api/v1/events", content=huge,
                                headers={**org.auth("alice"),
                                         "content-type": "application/json"})
    assert too_big.status_code == 413
    assert error_of(too_big)["field"] == "body"

    async def chunked() -> Any:  # no Content-Length: counted while reading
        for start in range(0, len(huge), 65536):
            yield huge[start:start + 65536]

    streamed = await client.post("/api/v1/events", content=chunked(),
                                 headers=org.auth("alice"))
    assert streamed.status_code == 413
    assert (await report(client, org, "alice"))["total"]["calls"] == 0


async def test_malformed_bodies_get_4xx_json(client: httpx.AsyncClient, org: Org) -> None:
    for body in (b"", b"{", b"[1]", b"null", b'{"events": "x"}', b'{"events": [[]]}',
                 b'{"events": [{"type": "call"}]}', "\u00e9".encode("latin-1")):
        response = await client.post("/api/v1/events", content=body, headers=org.auth("bob"))
        assert 400 <= response.status_code < 500, body
        error_of(response)


# -------------------------------------------------------------------------- me, budgets


async def test_me_and_opting_in(client: httpx.AsyncClient, org: Org) -> None:
    me = (await client.get("/api/v1/me", headers=org.auth("alice"))).json()
    assert me == {"developer": "alice", "role": "developer", "teams": ["core"],
                  "share_individual": False}
    changed = await client.put("/api/v1/me/sharing", json={"share_individual": True},
                               headers=org.auth("alice"))
    assert changed.json()["share_individual"] is True


async def test_my_budget_has_the_agents_field_names(client: httpx.AsyncClient, org: Org
                                                    ) -> None:
    set_team = await client.put("/api/v1/budgets", headers=org.auth("lena"), json={
        "scope": "team", "team": "core", "name": "team-day", "limit_usd": 40,
        "mode": "enforce", "timezone": "Europe/Berlin"})
    assert set_team.status_code == 200, set_team.text
    set_mine = await client.put("/api/v1/budgets", headers=org.auth("lena"), json={
        "scope": "developer", "developer": "alice", "period": "5h", "limit_tokens": 2_000_000,
        "warn_at": 0.9})
    assert set_mine.status_code == 200, set_mine.text

    response = await client.get("/api/v1/me/budget", headers=org.auth("alice"))
    assert response.json() == {"budgets": [
        {"name": "default", "scope": "developer", "period": "5h", "timezone": None,
         "week_starts": "monday", "limit_usd": None, "limit_tokens": 2_000_000,
         "warn_at": 0.9, "mode": "warn"},
        {"name": "team-day", "scope": "team", "period": "day", "timezone": "Europe/Berlin",
         "week_starts": "monday", "limit_usd": 40.0, "limit_tokens": None, "warn_at": 0.8,
         "mode": "enforce"}]}
    assert (await client.get("/api/v1/me/budget", headers=org.auth("carol"))).json() == {
        "budgets": []}


async def test_budget_permissions(client: httpx.AsyncClient, org: Org) -> None:
    other_team = await client.put("/api/v1/budgets", headers=org.auth("lena"), json={
        "scope": "team", "team": "web", "limit_usd": 1})
    assert other_team.status_code == 403
    as_developer = await client.put("/api/v1/budgets", headers=org.auth("alice"), json={
        "scope": "developer", "developer": "alice", "limit_usd": 1000})
    assert as_developer.status_code == 403
    bad_zone = await client.put("/api/v1/budgets", headers=org.auth("admin"), json={
        "scope": "team", "team": "web", "limit_usd": 1, "timezone": "Nowhere/Land"})
    assert bad_zone.status_code == 422
    assert error_of(bad_zone)["field"] == "timezone"
    made = await client.put("/api/v1/budgets", headers=org.auth("admin"), json={
        "scope": "team", "team": "web", "limit_usd": 1})
    gone = await client.delete(f"/api/v1/budgets/{made.json()['id']}", headers=org.auth("lena"))
    assert gone.status_code == 403
    gone = await client.delete(f"/api/v1/budgets/{made.json()['id']}",
                               headers=org.auth("admin"))
    assert gone.status_code == 200
    assert (await client.get("/api/v1/budgets", headers=org.auth("alice"))).status_code == 403


# ---------------------------------------------------------------------------- reports


async def send_funnel(client: httpx.AsyncClient, org: Org, who: str, tokens: int) -> None:
    """One call and one suggestion's whole life, for ``who``."""
    response = await post_events(
        client, org, who,
        call(input_tokens=tokens, output_tokens=0, cache_read_tokens=0, cache_write_tokens=0,
             reasoning_tokens=0, cost_micro_usd=tokens * 10),
        suggestion("offered", f"{who}-1", chars=100, lines=10),
        suggestion("accepted", f"{who}-1", chars=100, lines=10),
        suggestion("retained", f"{who}-1", chars=90, lines=9, checkpoint_s=30),
        suggestion("retained", f"{who}-1", chars=50, lines=5, checkpoint_s=900),
        suggestion("committed", f"{who}-1", chars=40, lines=4, commit=f"c0ffee{who[0]}"
                   .replace("l", "1").replace("i", "1").replace("o", "0")
                   .replace("r", "2").replace("n", "3").replace("b", "b")),
        suggestion("offered", f"{who}-2", chars=10, lines=1),
        suggestion("rejected", f"{who}-2", chars=10, lines=1))
    assert response.status_code == 200, response.text


async def test_outcome_figures_end_to_end(client: httpx.AsyncClient, org: Org) -> None:
    await send_funnel(client, org, "alice", tokens=1000)
    deployed = await client.post("/api/v1/deployments", headers=org.auth("ci"),
                                 json={"environment": "prod", "commits": ["c0ffeea"]})
    assert deployed.json() == {"environment": "prod", "commits": 1, "suggestions": 1,
                               "lines": 4}
    body = await report(client, org, "alice", group_by="model")
    [row] = body["rows"]
    assert row["group"] == {"model": "claude-sonnet-4-5"}
    assert row["tokens"]["total"] == 1000
    assert row["cost_usd"] == 0.01
    assert row["acceptance_rate"] == 0.5
    assert row["funnel"]["rejected"] == {"events": 1, "chars": 10, "lines": 1}
    retention = {r["checkpoint_s"]: r for r in row["retention"]}
    assert retention[30]["rate_chars"] == 0.9
    assert retention[900]["rate_lines"] == 0.5
    assert row["per_line"] == {
        "tokens_per_retained_line": 200.0, "usd_per_retained_line": 0.002,
        "tokens_per_committed_line": 250.0, "usd_per_committed_line": 0.0025,
        "tokens_per_deployed_line": 250.0, "usd_per_deployed_line": 0.0025}
    assert body["total"]["per_line"] == row["per_line"]
    assert body["retained_checkpoint_s"] == 900


async def test_developers_read_only_their_own(client: httpx.AsyncClient, org: Org) -> None:
    await send_funnel(client, org, "alice", tokens=1000)
    await send_funnel(client, org, "bob", tokens=30)
    mine = await report(client, org, "alice", group_by="developer")
    assert [r["group"] for r in mine["rows"]] == [{"developer": "alice"}]
    assert mine["total"]["tokens"]["total"] == 1000
    for params in ({"team": "core"}, {"developer": "bob"}):
        response = await client.get("/api/v1/reports/outcomes", params=params,
                                    headers=org.auth("alice"))
        assert response.status_code == 403


async def test_leads_see_small_groups_only_in_aggregate(client: httpx.AsyncClient, org: Org
                                                        ) -> None:
    for who, tokens in (("alice", 1000), ("bob", 30), ("lena", 7), ("carol", 5)):
        await send_funnel(client, org, who, tokens)
    team = await report(client, org, "lena", group_by="developer")
    rows = {r["group"]["developer"]: r["tokens"]["total"] for r in team["rows"]}
    assert rows == {"lena": 7, None: 1030}  # core has 3 developers < 5: alice+bob merged
    assert team["suppressed_developers"] == 2
    assert team["total"]["tokens"]["total"] == 1037  # carol (team web) is not in it
    refused = await client.get("/api/v1/reports/outcomes", headers=org.auth("lena"),
                               params={"developer": "bob"})
    assert refused.status_code == 403

    await client.put("/api/v1/me/sharing", json={"share_individual": True},
                     headers=org.auth("bob"))
    team = await report(client, org, "lena", group_by="developer")
    assert {r["group"]["developer"]: r["tokens"]["total"] for r in team["rows"]} == {
        "bob": 30, "lena": 7, None: 1000}
    assert (await report(client, org, "lena", developer="bob"))["total"]["tokens"][
        "total"] == 30
    by_model = await report(client, org, "lena", group_by="model")
    assert by_model["suppressed_developers"] == 0
    assert by_model["rows"][0]["developers"] == 3
    other_team = await client.get("/api/v1/reports/outcomes", headers=org.auth("lena"),
                                  params={"team": "web"})
    assert other_team.status_code == 403


async def test_admins_see_every_developer_and_team(client: httpx.AsyncClient, org: Org
                                                   ) -> None:
    for who, tokens in (("alice", 1000), ("bob", 30), ("carol", 5)):
        await send_funnel(client, org, who, tokens)
    people = await report(client, org, "admin", group_by="developer")
    assert {r["group"]["developer"]: r["tokens"]["total"] for r in people["rows"]} == {
        "alice": 1000, "bob": 30, "carol": 5}
    teams = await report(client, org, "admin", group_by="team,model")
    assert {r["group"]["team"]: r["tokens"]["total"] for r in teams["rows"]} == {
        "core": 1030, "web": 5}
    days = await report(client, org, "admin", group_by="day")
    assert len(days["rows"]) == 1
    assert days["total"]["developers"] == 3


async def test_report_parameters_are_checked(client: httpx.AsyncClient, org: Org) -> None:
    for params, field in (({"group_by": "colour"}, "group_by"), ({"from": "yesterday"}, "from"),
                          ({"from": "2026-02-01", "to": "2026-01-01"}, "from"),
                          ({"team": "nope"}, "team"), ({"developer": "nobody"}, "developer")):
        response = await client.get("/api/v1/reports/outcomes", params=params,
                                    headers=org.auth("admin"))
        assert 400 <= response.status_code < 500, params
        assert error_of(response)["field"] == field, params


# ---------------------------------------------------------------------------- admin API


async def test_admin_and_lead_manage_people(client: httpx.AsyncClient, org: Org) -> None:
    made = await client.post("/api/v1/teams", json={"name": "data"}, headers=org.auth("admin"))
    assert made.status_code == 201
    assert (await client.post("/api/v1/teams", json={"name": "data"},
                              headers=org.auth("admin"))).status_code == 409
    assert (await client.post("/api/v1/teams", json={"name": "x"},
                              headers=org.auth("lena"))).status_code == 403

    hired = await client.post("/api/v1/members", headers=org.auth("lena"),
                              json={"name": "dan", "teams": ["core"]})
    assert hired.status_code == 201, hired.text
    token = hired.json()["token"]["token"]
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["teams"] == ["core"]
    assert (await client.post("/api/v1/members", headers=org.auth("lena"),
                              json={"name": "eve", "role": "admin", "teams": ["core"]})
            ).status_code == 403
    assert (await client.put("/api/v1/teams/web/members/dan", headers=org.auth("lena"))
            ).status_code == 403
    moved = await client.put("/api/v1/teams/data/members/dan", headers=org.auth("admin"))
    assert moved.json() == {"name": "data", "members": ["dan"]}

    ci = await client.post("/api/v1/ci-tokens", json={"team": "core"}, headers=org.auth("lena"))
    assert ci.status_code == 201
    assert ci.json()["token"].startswith("mlc_")
    assert (await client.post("/api/v1/ci-tokens", json={}, headers=org.auth("lena"))
            ).status_code == 403
    new = await client.post("/api/v1/members/alice/tokens", json={"label": "laptop"},
                            headers=org.auth("lena"))
    assert new.status_code == 201
    assert (await client.post("/api/v1/members/carol/tokens", json={},
                              headers=org.auth("lena"))).status_code == 403
    members = (await client.get("/api/v1/members", headers=org.auth("lena"))).json()
    assert {m["name"] for m in members["members"]} == {"lena", "alice", "bob", "dan"}
    demote = await client.patch("/api/v1/members/admin", json={"role": "lead"},
                                headers=org.auth("admin"))
    assert demote.status_code == 409  # the last admin stays
    teams = (await client.get("/api/v1/teams", headers=org.auth("carol"))).json()
    assert teams == {"teams": [{"name": "web", "members": ["carol"]}]}


async def test_a_lead_cannot_take_over_another_teams_developer(client: httpx.AsyncClient,
                                                                org: Org) -> None:
    """lena leads core; carol is in web. Pulling carol into core, minting a token for her
    and letting her go again once gave lena a hidden credential that read carol's data."""
    pulled = await client.put("/api/v1/teams/core/members/carol", headers=org.auth("lena"))
    assert pulled.status_code == 403, pulled.text
    assert "an admin adds them" in pulled.json()["error"]["message"]
    assert (await client.post("/api/v1/members/carol/tokens", json={"label": "mine"},
                              headers=org.auth("lena"))).status_code == 403
    # Nor once an admin has put carol in core too: she is still in web, which lena does
    # not lead.
    shared = await client.put("/api/v1/teams/core/members/carol", headers=org.auth("admin"))
    assert shared.status_code == 200
    minted = await client.post("/api/v1/members/carol/tokens", json={"label": "mine"},
                               headers=org.auth("lena"))
    assert minted.status_code == 403
    assert "also in a team you do not lead" in minted.json()["error"]["message"]
    budget = await client.put("/api/v1/budgets", headers=org.auth("lena"), json={
        "scope": "developer", "developer": "carol", "period": "day", "limit_usd": 1})
    assert budget.status_code == 403
    # Her own team's developers stay hers to manage.
    assert (await client.post("/api/v1/members/alice/tokens", json={"label": "laptop"},
                              headers=org.auth("lena"))).status_code == 201
    me = await client.get("/api/v1/me", headers=org.auth("carol"))
    assert me.json()["teams"] == ["core", "web"]


# ------------------------------------------------------------------------ the service


async def test_health_metrics_and_openapi(client: httpx.AsyncClient, org: Org) -> None:
    health = await client.get("/healthz")
    assert health.json() == {"status": "ok", "database": "ok"}
    await post_events(client, org, "alice", call(), call())
    metrics = (await client.get("/metrics")).text
    assert 'meterline_events_total{result="inserted"} 2.0' in metrics
    assert re.search(r'meterline_http_requests_total\{method="POST",'
                     r'route="/api/v1/events",status="200"\} 1\.0', metrics)
    document = (await client.get("/openapi.json")).json()
    assert document["paths"]["/api/v1/events"]["post"]["requestBody"]["content"][
        "application/json"]["schema"] == {"$ref": "#/components/schemas/EventBatch"}
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    call_schema = document["components"]["schemas"]["CallEvent"]
    assert call_schema["additionalProperties"] is False


async def test_unknown_routes_answer_json(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/nothing")
    assert missing.status_code == 404
    assert error_of(missing)["message"] == "Not Found"
    wrong_method = await client.delete("/healthz")
    assert wrong_method.status_code == 405
    error_of(wrong_method)


async def test_a_database_that_is_not_there_is_a_503_to_retry(pg_url: str) -> None:
    """The server reachable, the database gone (dropped, or not created yet): as
    unavailable as a refused connection, not an internal error."""
    from server._app import create_app
    from server._db import create_engine
    from server._settings import Settings, database_url
    from server._store import Store

    url = database_url(pg_url.rsplit("/", 1)[0] + "/meterline_no_such_database")
    store = Store(create_engine(url))
    app = create_app(Settings(db_url=url), store_=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://server") as http:
        auth = {"Authorization": "Bearer mlt_0123456789ab_" + "A" * 43}
        for response in (await http.get("/api/v1/me", headers=auth),
                         await http.post("/api/v1/events", headers=auth,
                                         json={"events": []})):
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "5"
            assert "unavailable" in error_of(response)["message"]
    await store.close()


async def test_an_unreachable_database_is_a_503_to_retry() -> None:
    from server._app import create_app
    from server._db import create_engine
    from server._settings import Settings
    from server._store import Store

    url = "postgresql+asyncpg://postgres@127.0.0.1:1/nothing"
    store = Store(create_engine(url))
    app = create_app(Settings(db_url=url), store_=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://server") as http:
        token = "mlt_0123456789ab_" + "A" * 43
        response = await http.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        error_of(response)
        health = await http.get("/healthz")
        assert health.status_code == 503
        assert health.json() == {"status": "degraded", "database": "unreachable"}
    await store.close()

"""Who may do what: the role rules as pure functions."""

from __future__ import annotations

import pytest

from server import _access
from server._access import SYSTEM, Principal, report_scope
from server._errors import Forbidden

ADMIN = Principal(kind="member", member_id=1, name="admin", role="admin")
LEAD = Principal(kind="member", member_id=2, name="lena", role="lead",
                 team_ids=frozenset({10}))
DEV = Principal(kind="member", member_id=3, name="alice", role="developer",
                team_ids=frozenset({10}))
CI = Principal(kind="ci", token_id="abc", team_ids=frozenset({10}))


def test_ci_tokens_only_report_deployments() -> None:
    _access.require_deployer(CI)
    _access.require_deployer(ADMIN)
    for rule in (_access.require_member, _access.require_person):
        with pytest.raises(Forbidden):
            rule(CI)
    with pytest.raises(Forbidden):
        _access.require_deployer(DEV)
    with pytest.raises(Forbidden):
        report_scope(CI)


def test_team_management() -> None:
    _access.require_team_manager(ADMIN, 99, "any")
    _access.require_team_manager(SYSTEM, 99, "any")
    _access.require_team_manager(LEAD, 10, "core")
    for who, team in ((LEAD, 11), (DEV, 10)):
        with pytest.raises(Forbidden):
            _access.require_team_manager(who, team, "x")


def test_member_management() -> None:
    _access.require_member_manager(LEAD, "developer", frozenset({10}), "alice")
    with pytest.raises(Forbidden, match="an admin manages them"):
        # also in a team the lead does not lead: a token would act there too
        _access.require_member_manager(LEAD, "developer", frozenset({10, 12}), "alice")
    with pytest.raises(Forbidden):  # a lead does not manage other leads
        _access.require_member_manager(LEAD, "lead", frozenset({10}), "leo")
    with pytest.raises(Forbidden):  # nor developers outside the lead's teams
        _access.require_member_manager(LEAD, "developer", frozenset({11}), "carol")
    with pytest.raises(Forbidden):
        _access.require_member_manager(DEV, "developer", frozenset({10}), "bob")


def test_who_may_put_a_member_into_a_team() -> None:
    _access.require_team_joiner(ADMIN, "lead", frozenset({11}), "leo")
    two_teams = Principal(kind="member", member_id=4, name="lars", role="lead",
                          team_ids=frozenset({10, 12}))
    _access.require_team_joiner(two_teams, "developer", frozenset({10}), "alice")  # a move
    for who, role, teams in ((LEAD, "developer", frozenset({11})),  # another lead's
                             (LEAD, "developer", frozenset({10, 11})),
                             (LEAD, "developer", frozenset()),  # in no team yet
                             (LEAD, "lead", frozenset({10}))):
        with pytest.raises(Forbidden):
            _access.require_team_joiner(who, role, teams, "x")


def test_new_members() -> None:
    _access.check_new_member(ADMIN, "admin", frozenset())
    _access.check_new_member(LEAD, "developer", frozenset({10}))
    for role, teams in (("lead", frozenset({10})), ("developer", frozenset()),
                        ("developer", frozenset({10, 11}))):
        with pytest.raises(Forbidden):
            _access.check_new_member(LEAD, role, teams)
    with pytest.raises(Forbidden):
        _access.check_new_member(DEV, "developer", frozenset({10}))


def test_report_scopes() -> None:
    everything = report_scope(ADMIN)
    assert (everything.developer_ids, everything.team_ids) == (None, None)
    assert not everything.suppress_individuals

    lead = report_scope(LEAD)
    assert lead.team_ids == frozenset({10})
    assert lead.suppress_individuals
    with pytest.raises(Forbidden):
        report_scope(LEAD, team_id=11)
    with pytest.raises(Forbidden, match="opted in"):
        report_scope(LEAD, developer_id=3, developer_team_ids=frozenset({10}))
    assert report_scope(LEAD, developer_id=3, developer_team_ids=frozenset({10}),
                        developer_shares=True).developer_ids == frozenset({3})
    with pytest.raises(Forbidden, match="not in your teams"):
        report_scope(LEAD, developer_id=4, developer_team_ids=frozenset({11}),
                     developer_shares=True)

    own = report_scope(DEV)
    assert own.developer_ids == frozenset({3})
    assert own.team_ids is None
    assert report_scope(DEV, developer_id=3).developer_ids == frozenset({3})
    for kwargs in ({"team_id": 10}, {"developer_id": 4}):
        with pytest.raises(Forbidden):
            report_scope(DEV, **kwargs)  # type: ignore[arg-type]

"""Who may do what, as pure functions of the caller (``Principal``) and the target.

Roles: a developer sends and reads their own data; a lead also reads and manages their
teams (reports, members who are developers, budgets, CI tokens); an admin does everything.
A CI token may only report deployments. Every route calls one of these before it acts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from server._errors import Forbidden

Kind = Literal["member", "ci", "system"]


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: a member's token, a CI token, or the server's own CLI."""

    kind: Kind
    token_id: str | None = None
    member_id: int | None = None
    name: str | None = None
    role: str | None = None
    #: A member's teams; a CI token's one team (empty: a CI token for every team).
    team_ids: frozenset[int] = frozenset()
    share_individual: bool = False

    @property
    def is_admin(self) -> bool:
        return self.kind == "system" or (self.kind == "member" and self.role == "admin")

    @property
    def is_lead(self) -> bool:
        return self.kind == "member" and self.role == "lead"


#: The CLI on the server machine acts with full rights: it already holds the database.
SYSTEM = Principal(kind="system", name="(server cli)", role="admin")


def require_member(who: Principal) -> int:
    """A member's token (not CI); returns the member id."""
    if who.kind != "member" or who.member_id is None:
        raise Forbidden("a CI token may only POST /api/v1/deployments")
    return who.member_id


def require_person(who: Principal) -> None:
    """A member or the server's CLI: anything but a CI token."""
    if who.kind == "ci":
        raise Forbidden("a CI token may only POST /api/v1/deployments")


def require_admin(who: Principal) -> None:
    if not who.is_admin:
        raise Forbidden("only an admin may do this")


def require_lead_or_admin(who: Principal) -> None:
    if not (who.is_admin or who.is_lead):
        raise Forbidden("only a lead or an admin may do this")


def require_team_manager(who: Principal, team_id: int, team_name: str) -> None:
    """Admins manage every team; leads manage the teams they belong to."""
    if who.is_admin:
        return
    if who.is_lead and team_id in who.team_ids:
        return
    raise Forbidden(f"you do not lead team {team_name!r}", field="team")


def require_member_manager(who: Principal, target_role: str, target_team_ids: frozenset[int],
                           target_name: str) -> None:
    """Admins manage everyone; a lead manages developers all of whose teams the lead leads.

    Not those who are also in another team: a token issued for one acts as them everywhere
    (their data in that team too), and a budget set on one applies there too."""
    if who.is_admin:
        return
    if who.is_lead and target_role == "developer" and target_team_ids \
            and target_team_ids <= who.team_ids:
        return
    if who.is_lead and target_role == "developer" and who.team_ids & target_team_ids:
        raise Forbidden(f"{target_name!r} is also in a team you do not lead: an admin "
                        "manages them", field="developer")
    raise Forbidden(f"you may not manage {target_name!r}", field="developer")


def require_team_joiner(who: Principal, target_role: str, target_team_ids: frozenset[int],
                        target_name: str) -> None:
    """Who may put a member into a team (the team's manager, checked first): an admin
    anyone; a lead only developers already in the lead's teams, and in no other — moving
    them between the lead's own teams. Anyone else joins through an admin: once in the
    team, their whole history would count in the team's figures the lead reads."""
    if who.is_admin:
        return
    if target_role != "developer":
        raise Forbidden("a lead adds and removes developers only", field="developer")
    if not target_team_ids or not target_team_ids <= who.team_ids:
        raise Forbidden(f"{target_name!r} is not only in teams you lead: an admin adds "
                        "them to a team", field="developer")


def require_deployer(who: Principal) -> None:
    if who.kind == "ci" or who.is_admin:
        return
    raise Forbidden("deployments are reported with a CI token (or by an admin)")


def check_new_member(who: Principal, role: str, team_ids: frozenset[int]) -> None:
    """An admin creates any member; a lead creates developers in (only) the lead's teams."""
    if who.is_admin:
        return
    if who.is_lead and role == "developer" and team_ids and team_ids <= who.team_ids:
        return
    if who.is_lead:
        raise Forbidden("a lead may create developers in the lead's own teams only",
                        field="teams" if role == "developer" else "role")
    raise Forbidden("only a lead or an admin may create members")


@dataclass(frozen=True, slots=True)
class ReportScope:
    """Whose rows a report may read. ``None`` means no restriction on that axis."""

    developer_ids: frozenset[int] | None
    team_ids: frozenset[int] | None
    #: Apply the minimum group size to per-developer rows (leads' reports).
    suppress_individuals: bool
    #: The caller's own developer id: always visible to the caller.
    viewer_id: int | None


def report_scope(who: Principal, *, team_id: int | None = None,
                 developer_id: int | None = None,
                 developer_team_ids: frozenset[int] = frozenset(),
                 developer_shares: bool = False) -> ReportScope:
    """What ``who`` may read, narrowed by the optional ``team`` and ``developer`` filters.

    ``developer_team_ids`` and ``developer_shares`` describe the filtered developer.
    """
    require_person(who)
    member_id = who.member_id
    if who.is_admin:
        return ReportScope(
            developer_ids=None if developer_id is None else frozenset({developer_id}),
            team_ids=None if team_id is None else frozenset({team_id}),
            suppress_individuals=False, viewer_id=member_id)
    if who.is_lead:
        if team_id is not None and team_id not in who.team_ids:
            raise Forbidden("you do not lead this team", field="team")
        teams = who.team_ids if team_id is None else frozenset({team_id})
        if developer_id is not None and developer_id != member_id:
            if not developer_team_ids & teams:
                raise Forbidden("this developer is not in your teams", field="developer")
            if not developer_shares:
                raise Forbidden("this developer has not opted in to individual reports",
                                field="developer")
        return ReportScope(
            developer_ids=None if developer_id is None else frozenset({developer_id}),
            team_ids=teams, suppress_individuals=True, viewer_id=member_id)
    if team_id is not None:
        raise Forbidden("a developer reads only their own data", field="team")
    if developer_id is not None and developer_id != member_id:
        raise Forbidden("a developer reads only their own data", field="developer")
    assert member_id is not None
    return ReportScope(developer_ids=frozenset({member_id}), team_ids=None,
                       suppress_individuals=False, viewer_id=member_id)

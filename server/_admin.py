"""Members, teams, tokens and budgets: each operation authorizes, then reads or writes.

Every operation takes the caller (``Principal``) first and applies the rules of
``_access`` to the rows it reads, inside the same transaction. The HTTP routes and the CLI
(acting as ``SYSTEM``) call the same operations, so they cannot drift apart.
"""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from server import _access, _budgets, _tokens
from server import _tables as t
from server._access import Principal
from server._errors import Conflict, Forbidden, InputError, NotFound
from server._summaries import MEMBERSHIP_LOCK, member_move_statements
from server._txn import StoreBase, now_ms
from server._wire import (
    Budget,
    BudgetIn,
    BudgetList,
    BudgetRecord,
    Deleted,
    Me,
    MemberCreated,
    MemberIn,
    MemberList,
    MemberOut,
    MemberPatch,
    MyBudgets,
    NewToken,
    Revoked,
    TeamList,
    TeamOut,
    TokenList,
    TokenOut,
    iso,
)


class _Member(msgspec.Struct):
    id: int
    name: str
    role: str
    share_individual: bool
    disabled: bool
    team_ids: frozenset[int]


class AdminOps(StoreBase):
    """Authentication and the admin/lead operations."""

    # ---------------------------------------------------------------- authentication

    async def authenticate(self, token: str) -> Principal | None:
        """The caller behind ``token``, or None for an unknown, revoked or malformed one."""
        presented = _tokens.parse(token)
        if presented is None:
            return None
        async with self.read() as conn:  # one round trip: the token, its member, their teams
            rows = list(await conn.execute(_AUTHENTICATE, {"token_id": presented.id}))
        if not rows or not _tokens.matches(presented, rows[0].secret_sha256):
            return None
        row = rows[0]
        if row.revoked_ms is not None or row.kind != presented.kind:
            return None
        if row.kind == "ci":
            teams = frozenset() if row.team_id is None else frozenset({row.team_id})
            return Principal(kind="ci", token_id=presented.id, team_ids=teams)
        if row.disabled:
            return None
        team_ids = frozenset(r.member_team for r in rows if r.member_team is not None)
        return Principal(kind="member", token_id=presented.id, member_id=row.member_id,
                         name=row.name, role=row.role, team_ids=team_ids,
                         share_individual=row.share_individual)

    # ------------------------------------------------------------------------ members

    async def create_first_admin(self, name: str) -> MemberCreated:
        """The first admin and its token; refused once any admin exists."""
        async def work(conn: AsyncConnection) -> MemberCreated:
            admins = await conn.scalar(sa.select(sa.func.count()).select_from(t.members)
                                       .where(t.members.c.role == "admin"))
            if admins:
                raise Conflict("the server already has an admin: create members with "
                               "`meterline server member create`")
            member_id = await _insert_member(conn, name, "admin", share=False)
            token = await _mint(conn, "member", member_id=member_id, team_id=None,
                                label="init", member=name, team=None)
            return MemberCreated(member=MemberOut(name, "admin", [], False, False),
                                 token=token)

        return await self.write(work)

    async def me(self, who: Principal) -> Me:
        member_id = _access.require_member(who)
        async with self.read() as conn:
            member = await _member_by_id(conn, member_id)
            teams = await _team_names(conn, member.team_ids)
        return Me(member.name, member.role, teams, member.share_individual)

    async def set_sharing(self, who: Principal, share: bool) -> Me:
        member_id = _access.require_member(who)

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(sa.update(t.members).where(t.members.c.id == member_id)
                               .values(share_individual=share))

        await self.write(work)
        return await self.me(who)

    async def create_member(self, who: Principal, spec: MemberIn) -> MemberCreated:
        async def work(conn: AsyncConnection) -> MemberCreated:
            team_ids = await _team_ids_by_name(conn, spec.teams)
            _access.check_new_member(who, spec.role, frozenset(team_ids.values()))
            member_id = await _insert_member(conn, spec.name, spec.role,
                                             share=spec.share_individual)
            if team_ids:
                await conn.execute(sa.insert(t.team_members), [
                    {"team_id": team_id, "member_id": member_id}
                    for team_id in sorted(team_ids.values())])
            token = await _mint(conn, "member", member_id=member_id, team_id=None,
                                label="created", member=spec.name, team=None)
            member = MemberOut(spec.name, spec.role, sorted(team_ids), spec.share_individual,
                               False)
            return MemberCreated(member=member, token=token)

        return await self.write(work)

    async def list_members(self, who: Principal) -> MemberList:
        _access.require_lead_or_admin(who)
        async with self.read() as conn:
            query = sa.select(t.members).order_by(t.members.c.name)
            if not who.is_admin:
                query = query.where(t.members.c.id.in_(_members_of_teams(who.team_ids)))
            rows = list(await conn.execute(query))
            names = await _teams_by_member(conn, [row.id for row in rows])
        return MemberList([MemberOut(row.name, row.role, names.get(row.id, []),
                                     row.share_individual, row.disabled) for row in rows])

    async def update_member(self, who: Principal, name: str, patch: MemberPatch) -> MemberOut:
        async def work(conn: AsyncConnection) -> MemberOut:
            member = await _member_by_name(conn, name)
            changes: dict[str, Any] = {}
            # Anyone may change their own opt-in; everything else is for admins.
            touches_rights = (patch.role is not msgspec.UNSET
                              or patch.disabled is not msgspec.UNSET)
            if touches_rights or member.id != who.member_id:
                _access.require_admin(who)
            if patch.role is not msgspec.UNSET:
                changes["role"] = patch.role
            if patch.disabled is not msgspec.UNSET:
                changes["disabled"] = patch.disabled
            if patch.share_individual is not msgspec.UNSET:
                changes["share_individual"] = patch.share_individual
            losing_admin = member.role == "admin" and (
                changes.get("role", "admin") != "admin" or changes.get("disabled", False))
            if losing_admin and not member.disabled:
                await _keep_one_admin(conn, member.id)
            if changes:
                await conn.execute(sa.update(t.members).where(t.members.c.id == member.id)
                                   .values(**changes))
            updated = await _member_by_id(conn, member.id)
            return MemberOut(updated.name, updated.role,
                             await _team_names(conn, updated.team_ids),
                             updated.share_individual, updated.disabled)

        return await self.write(work)

    # -------------------------------------------------------------------------- teams

    async def create_team(self, who: Principal, name: str) -> TeamOut:
        _access.require_admin(who)

        async def work(conn: AsyncConnection) -> TeamOut:
            try:
                async with conn.begin_nested():
                    await conn.execute(sa.insert(t.teams).values(name=name,
                                                                 created_ms=now_ms()))
            except IntegrityError:
                raise Conflict(f"team {name!r} exists", field="name") from None
            return TeamOut(name, [])

        return await self.write(work)

    async def delete_team(self, who: Principal, name: str) -> Deleted:
        _access.require_admin(who)

        async def work(conn: AsyncConnection) -> Deleted:
            team_id = await _team_id(conn, name)
            await conn.execute(sa.delete(t.teams).where(t.teams.c.id == team_id))
            return Deleted(name)

        return await self.write(work)

    async def list_teams(self, who: Principal) -> TeamList:
        _access.require_person(who)
        async with self.read() as conn:
            query = sa.select(t.teams.c.id, t.teams.c.name).order_by(t.teams.c.name)
            if not who.is_admin:
                query = query.where(t.teams.c.id.in_(sorted(who.team_ids)))
            teams = list(await conn.execute(query))
            members = await conn.execute(
                sa.select(t.team_members.c.team_id, t.members.c.name)
                .join(t.members, t.members.c.id == t.team_members.c.member_id)
                .where(t.team_members.c.team_id.in_([team.id for team in teams]))
                .order_by(t.members.c.name))
            by_team: dict[int, list[str]] = {}
            for team_id, member_name in members:
                by_team.setdefault(team_id, []).append(member_name)
        return TeamList([TeamOut(team.name, by_team.get(team.id, [])) for team in teams])

    async def add_to_team(self, who: Principal, team: str, name: str) -> TeamOut:
        return await self._change_team(who, team, name, add=True)

    async def remove_from_team(self, who: Principal, team: str, name: str) -> TeamOut:
        return await self._change_team(who, team, name, add=False)

    async def _change_team(self, who: Principal, team: str, name: str, *, add: bool
                           ) -> TeamOut:
        async def work(conn: AsyncConnection) -> TeamOut:
            team_id = await _team_id(conn, team)
            _access.require_team_manager(who, team_id, team)
            member = await _member_by_name(conn, name)
            if not who.is_admin and member.role != "developer":
                raise Forbidden("a lead adds and removes developers only", field="developer")
            if self.is_postgres:  # wait for the member's ingests in flight (see _ingest)
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:lock, :member)"),
                                   {"lock": MEMBERSHIP_LOCK, "member": member.id})
                member = await _member_by_id(conn, member.id)
            if add and team_id not in member.team_ids:
                _access.require_team_joiner(who, member.role, member.team_ids, name)
            moved = None
            if add and team_id not in member.team_ids:
                await conn.execute(sa.insert(t.team_members).values(team_id=team_id,
                                                                    member_id=member.id))
                moved = member_move_statements(subtract=False)
            elif not add:
                removed = await conn.execute(sa.delete(t.team_members).where(
                    t.team_members.c.team_id == team_id,
                    t.team_members.c.member_id == member.id))
                if removed.rowcount:
                    moved = member_move_statements(subtract=True)
            for statement in moved or ():  # the team's summaries follow its members
                await conn.execute(sa.text(statement), {"team": team_id, "member": member.id})
            names = await conn.scalars(
                sa.select(t.members.c.name)
                .join(t.team_members, t.team_members.c.member_id == t.members.c.id)
                .where(t.team_members.c.team_id == team_id).order_by(t.members.c.name))
            return TeamOut(team, list(names))

        return await self.write(work)

    # ------------------------------------------------------------------------- tokens

    async def issue_token(self, who: Principal, name: str, label: str) -> NewToken:
        """A new token for member ``name`` (yourself, or someone you manage)."""
        async def work(conn: AsyncConnection) -> NewToken:
            member = await _member_by_name(conn, name)
            if member.id != who.member_id:
                _access.require_member_manager(who, member.role, member.team_ids, name)
            return await _mint(conn, "member", member_id=member.id, team_id=None,
                               label=label, member=name, team=None)

        return await self.write(work)

    async def create_ci_token(self, who: Principal, team: str | None, label: str) -> NewToken:
        """A token for CI to report deployments: for one team, or (admins) for all."""
        async def work(conn: AsyncConnection) -> NewToken:
            team_id = None
            if team is None:
                _access.require_admin(who)
            else:
                team_id = await _team_id(conn, team)
                _access.require_team_manager(who, team_id, team)
            return await _mint(conn, "ci", member_id=None, team_id=team_id, label=label,
                               member=None, team=team)

        return await self.write(work)

    async def list_tokens(self, who: Principal) -> TokenList:
        query = (sa.select(t.tokens.c.id, t.tokens.c.kind, t.tokens.c.label,
                           t.tokens.c.created_ms, t.tokens.c.revoked_ms,
                           t.members.c.name.label("member"), t.teams.c.name.label("team"))
                 .select_from(t.tokens
                              .outerjoin(t.members, t.members.c.id == t.tokens.c.member_id)
                              .outerjoin(t.teams, t.teams.c.id == t.tokens.c.team_id))
                 .order_by(t.tokens.c.created_ms, t.tokens.c.id))
        if not who.is_admin:
            mine = t.tokens.c.member_id == _access.require_member(who)
            if who.is_lead:
                teams = sorted(who.team_ids)
                query = query.where(sa.or_(
                    mine, t.tokens.c.team_id.in_(teams),
                    sa.and_(t.members.c.role == "developer",
                            t.tokens.c.member_id.in_(_members_of_teams(who.team_ids)))))
            else:
                query = query.where(mine)
        async with self.read() as conn:
            rows = list(await conn.execute(query))
        return TokenList([TokenOut(row.id, row.kind, row.member, row.team, row.label,
                                   iso(row.created_ms),
                                   None if row.revoked_ms is None else iso(row.revoked_ms))
                          for row in rows])

    async def revoke_token(self, who: Principal, token_id: str) -> Revoked:
        async def work(conn: AsyncConnection) -> Revoked:
            row = (await conn.execute(sa.select(t.tokens).where(t.tokens.c.id == token_id))
                   ).first()
            if row is None:
                raise NotFound(f"no token {token_id!r}", field="token")
            if row.member_id is not None and row.member_id != who.member_id:
                member = await _member_by_id(conn, row.member_id)
                _access.require_member_manager(who, member.role, member.team_ids,
                                               member.name)
            elif row.member_id is None:
                if row.team_id is None:
                    _access.require_admin(who)
                else:
                    _access.require_team_manager(who, row.team_id, "of this token")
            revoked_ms = row.revoked_ms or now_ms()
            await conn.execute(sa.update(t.tokens).where(t.tokens.c.id == token_id)
                               .values(revoked_ms=revoked_ms))
            return Revoked(token_id, iso(revoked_ms))

        return await self.write(work)

    # ------------------------------------------------------------------------ budgets

    async def set_budget(self, who: Principal, spec: BudgetIn) -> BudgetRecord:
        """Create the budget, or replace the one with the same scope, owner and name."""
        period = _budgets.normalize_period(spec.period)
        timezone = _budgets.check_timezone(spec.timezone)
        limit_micro = _budgets.check_limits(spec.limit_usd, spec.limit_tokens)

        async def work(conn: AsyncConnection) -> BudgetRecord:
            owner = await self._budget_owner(conn, who, spec.scope, spec.team, spec.developer)
            values = {"name": spec.name, "scope": spec.scope, "period": period,
                      "timezone": timezone, "week_starts": spec.week_starts,
                      "limit_micro_usd": limit_micro, "limit_tokens": spec.limit_tokens,
                      "warn_at": spec.warn_at, "mode": spec.mode, "updated_ms": now_ms(),
                      **owner}
            match = sa.and_(t.budgets.c.scope == spec.scope, t.budgets.c.name == spec.name,
                            *(t.budgets.c[k] == v for k, v in owner.items() if v is not None))
            existing = await conn.scalar(sa.select(t.budgets.c.id).where(match))
            if existing is None:
                await conn.execute(sa.insert(t.budgets).values(**values))
            else:
                await conn.execute(sa.update(t.budgets).where(t.budgets.c.id == existing)
                                   .values(**values))
            row = (await conn.execute(_budget_query().where(match))).one()
            return _budget_record(row)

        return await self.write(work)

    async def _budget_owner(self, conn: AsyncConnection, who: Principal, scope: str,
                            team: str | None, developer: str | None) -> dict[str, int | None]:
        if scope == "team":
            if team is None or developer is not None:
                raise InputError("a team budget names a team (and no developer)",
                                 field="team")
            team_id = await _team_id(conn, team)
            _access.require_team_manager(who, team_id, team)
            return {"team_id": team_id, "member_id": None}
        if developer is None or team is not None:
            raise InputError("a developer budget names a developer (and no team)",
                             field="developer")
        member = await _member_by_name(conn, developer)
        _access.require_member_manager(who, member.role, member.team_ids, developer)
        return {"team_id": None, "member_id": member.id}

    async def list_budgets(self, who: Principal) -> BudgetList:
        _access.require_lead_or_admin(who)
        query = _budget_query().order_by(t.budgets.c.scope, t.budgets.c.id)
        if not who.is_admin:
            teams = sorted(who.team_ids)
            query = query.where(sa.or_(
                t.budgets.c.team_id.in_(teams),
                sa.and_(t.members.c.role == "developer",
                        t.budgets.c.member_id.in_(_members_of_teams(who.team_ids)))))
        async with self.read() as conn:
            rows = list(await conn.execute(query))
        return BudgetList([_budget_record(row) for row in rows])

    async def delete_budget(self, who: Principal, budget_id: int) -> Deleted:
        async def work(conn: AsyncConnection) -> Deleted:
            row = (await conn.execute(sa.select(t.budgets)
                                      .where(t.budgets.c.id == budget_id))).first()
            if row is None:
                raise NotFound(f"no budget {budget_id}", field="budget")
            if row.team_id is not None:
                _access.require_team_manager(who, row.team_id, "of this budget")
            else:
                member = await _member_by_id(conn, row.member_id)
                _access.require_member_manager(who, member.role, member.team_ids,
                                               member.name)
            await conn.execute(sa.delete(t.budgets).where(t.budgets.c.id == budget_id))
            return Deleted(str(budget_id))

        return await self.write(work)

    async def effective_budgets(self, who: Principal) -> MyBudgets:
        """The caller's own developer budgets, then their teams' budgets."""
        member_id = _access.require_member(who)
        query = (_budget_query()
                 .where(sa.or_(t.budgets.c.member_id == member_id,
                               t.budgets.c.team_id.in_(sorted(who.team_ids))))
                 .order_by(t.budgets.c.scope, t.budgets.c.name, t.budgets.c.id))
        async with self.read() as conn:
            rows = list(await conn.execute(query))
        return MyBudgets([Budget(row.name, row.scope, row.period, row.timezone,
                                 row.week_starts, _usd(row.limit_micro_usd),
                                 row.limit_tokens, row.warn_at, row.mode) for row in rows])

    # ------------------------------------------------------------------ for reports

    async def member_for_report(self, name: str) -> tuple[int, frozenset[int], bool]:
        """A developer's id, teams and opt-in, to narrow a report to them."""
        async with self.read() as conn:
            member = await _member_by_name(conn, name)
        return member.id, member.team_ids, member.share_individual

    async def team_for_report(self, name: str) -> int:
        async with self.read() as conn:
            return await _team_id(conn, name)


# ----------------------------------------------------------------------------- helpers

#: Built once: every request runs it.
_AUTHENTICATE = (
    sa.select(t.tokens.c.secret_sha256, t.tokens.c.kind, t.tokens.c.member_id,
              t.tokens.c.team_id, t.tokens.c.revoked_ms, t.members.c.name, t.members.c.role,
              t.members.c.share_individual, t.members.c.disabled,
              t.team_members.c.team_id.label("member_team"))
    .select_from(t.tokens
                 .outerjoin(t.members, t.members.c.id == t.tokens.c.member_id)
                 .outerjoin(t.team_members, t.team_members.c.member_id == t.tokens.c.member_id))
    .where(t.tokens.c.id == sa.bindparam("token_id")))


async def _team_ids_of(conn: AsyncConnection, member_id: int) -> frozenset[int]:
    return frozenset(await conn.scalars(sa.select(t.team_members.c.team_id)
                                        .where(t.team_members.c.member_id == member_id)))


def _members_of_teams(team_ids: frozenset[int]) -> sa.Select[tuple[int]]:
    return (sa.select(t.team_members.c.member_id)
            .where(t.team_members.c.team_id.in_(sorted(team_ids))))


async def _member_by_name(conn: AsyncConnection, name: str) -> _Member:
    row = (await conn.execute(sa.select(t.members).where(t.members.c.name == name))).first()
    if row is None:
        raise NotFound(f"no member {name!r}", field="developer")
    return _Member(row.id, row.name, row.role, row.share_individual, row.disabled,
                   await _team_ids_of(conn, row.id))


async def _member_by_id(conn: AsyncConnection, member_id: int) -> _Member:
    row = (await conn.execute(sa.select(t.members).where(t.members.c.id == member_id))).one()
    return _Member(row.id, row.name, row.role, row.share_individual, row.disabled,
                   await _team_ids_of(conn, row.id))


async def _insert_member(conn: AsyncConnection, name: str, role: str, *, share: bool) -> int:
    try:
        async with conn.begin_nested():
            result = await conn.execute(
                sa.insert(t.members).values(name=name, role=role, share_individual=share,
                                            disabled=False, created_ms=now_ms())
                .returning(t.members.c.id))
            return int(result.scalar_one())
    except IntegrityError:
        raise Conflict(f"member {name!r} exists", field="name") from None


async def _keep_one_admin(conn: AsyncConnection, member_id: int) -> None:
    others = await conn.scalar(
        sa.select(sa.func.count()).select_from(t.members)
        .where(t.members.c.role == "admin", t.members.c.disabled.is_(False),
               t.members.c.id != member_id))
    if not others:
        raise Conflict("this is the last active admin: promote another admin first",
                       field="role")


async def _team_id(conn: AsyncConnection, name: str) -> int:
    team_id = await conn.scalar(sa.select(t.teams.c.id).where(t.teams.c.name == name))
    if team_id is None:
        raise NotFound(f"no team {name!r}", field="team")
    return int(team_id)


async def _team_ids_by_name(conn: AsyncConnection, names: list[str]) -> dict[str, int]:
    found = {row.name: row.id for row in await conn.execute(
        sa.select(t.teams.c.name, t.teams.c.id).where(t.teams.c.name.in_(names)))}
    for name in names:
        if name not in found:
            raise NotFound(f"no team {name!r}", field="teams")
    return found


async def _team_names(conn: AsyncConnection, team_ids: frozenset[int]) -> list[str]:
    return list(await conn.scalars(sa.select(t.teams.c.name)
                                   .where(t.teams.c.id.in_(sorted(team_ids)))
                                   .order_by(t.teams.c.name)))


async def _teams_by_member(conn: AsyncConnection, member_ids: list[int]
                           ) -> dict[int, list[str]]:
    rows = await conn.execute(
        sa.select(t.team_members.c.member_id, t.teams.c.name)
        .join(t.teams, t.teams.c.id == t.team_members.c.team_id)
        .where(t.team_members.c.member_id.in_(member_ids)).order_by(t.teams.c.name))
    out: dict[int, list[str]] = {}
    for member_id, name in rows:
        out.setdefault(member_id, []).append(name)
    return out


async def _mint(conn: AsyncConnection, kind: _tokens.TokenKind, *, member_id: int | None,
                team_id: int | None, label: str, member: str | None, team: str | None
                ) -> NewToken:
    minted = _tokens.mint(kind)
    await conn.execute(sa.insert(t.tokens).values(
        id=minted.id, secret_sha256=minted.secret_sha256, kind=kind, member_id=member_id,
        team_id=team_id, label=label, created_ms=now_ms()))
    return NewToken(minted.id, minted.token, kind, member, team, label)


def _budget_query() -> sa.Select[Any]:
    return (sa.select(t.budgets, t.teams.c.name.label("team_name"),
                      t.members.c.name.label("member_name"))
            .select_from(t.budgets
                         .outerjoin(t.teams, t.teams.c.id == t.budgets.c.team_id)
                         .outerjoin(t.members, t.members.c.id == t.budgets.c.member_id)))


def _budget_record(row: Any) -> BudgetRecord:
    return BudgetRecord(row.id, row.name, row.scope, row.team_name, row.member_name,
                        row.period, row.timezone, row.week_starts, _usd(row.limit_micro_usd),
                        row.limit_tokens, row.warn_at, row.mode)


def _usd(micro: int | None) -> float | None:
    return None if micro is None else micro / 1_000_000

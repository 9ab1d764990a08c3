"""Outcomes end to end: completion → accept → scripted edits → retained figures; rejection;
suggestions reported by other integrations through meterline/*."""

from __future__ import annotations

import pytest
from lsp_harness import KEYS, PRICES, Sidecar, StartSidecar, eventually, openai_init
from lsp_upstream import Reply, Upstream
from lsprotocol import types

ACCEPTED = "result = 0\n    for item in items:\n        result += item\n    return result"
SOURCE = "def total(items):\n    \n\n\nprint(total([1, 2]))\n"
CHARS = len(ACCEPTED)  # 74
LINES = 4


def uri(name: str) -> str:
    return f"file:///work/project/{name}.py"


async def accept_at(sidecar: Sidecar, name: str) -> str:
    """Open a document, complete at (1, 4), accept as an editor would: the suggestion id."""
    sidecar.open(uri(name), SOURCE)
    [item] = await sidecar.complete(uri(name), 1, 4)
    outcome = await sidecar.accept(uri(name), item)
    assert outcome["outcome"] == "accepted"
    return str(outcome["suggestionId"])


def retained(sidecar: Sidecar, suggestion_id: str) -> list[tuple[int, int, int]]:
    return [(e["checkpoint_s"], e["chars"], e["lines"]) for e in sidecar.events("retained")
            if e["suggestion_id"] == suggestion_id]


async def test_retained_figures_follow_the_edits_exactly(start_sidecar: StartSidecar,
                                                         upstream: Upstream) -> None:
    upstream.default = Reply(text=ACCEPTED)
    sidecar = await start_sidecar(init=openai_init(upstream, retentionCheckpoints=[3]),
                                  config=PRICES, env=KEYS)
    kept = await accept_at(sidecar, "kept")

    typed = await accept_at(sidecar, "typed")
    sidecar.edit(uri("typed"), (2, 22), (2, 22), "  # each one")  # after "items:"
    sidecar.edit(uri("typed"), (3, 14), (3, 14), "_sum")  # inside "result"
    sidecar.edit(uri("typed"), (0, 0), (0, 0), "import os\n\n")  # above: shifts it all

    deleted = await accept_at(sidecar, "deleted")
    sidecar.edit(uri("deleted"), (4, 4), (4, 17), "")  # "return result" (indent stays)
    sidecar.edit(uri("deleted"), (1, 4), (1, 10), "total")  # "result" replaced

    moved = await accept_at(sidecar, "moved")
    sidecar.edit(uri("moved"), (3, 0), (4, 0), "")  # cut "        result += item\n"
    sidecar.edit(uri("moved"), (0, 0), (0, 0), "        result += item\n")  # paste on top

    undone = await accept_at(sidecar, "undone")
    sidecar.edit(uri("undone"), (2, 0), (4, 0), "")  # delete two lines
    sidecar.edit(uri("undone"), (2, 0), (2, 0),  # undo: the same text, same place
                 "    for item in items:\n        result += item\n")

    wrong = await accept_at(sidecar, "wrong")
    sidecar.edit(uri("wrong"), (1, 0), (4, 17), "    pass")  # all of it replaced

    ids = [kept, typed, deleted, moved, undone, wrong]
    await eventually(lambda: all(retained(sidecar, i) for i in ids), within=20,
                     what="a retained event for every suggestion")
    assert retained(sidecar, kept) == [(3, CHARS, LINES)]
    assert retained(sidecar, typed) == [(3, CHARS, LINES)]
    assert retained(sidecar, deleted) == [(3, CHARS - 13 - 6, LINES - 1)]
    assert retained(sidecar, moved) == [(3, CHARS - 23, LINES - 1)]
    assert retained(sidecar, undone) == [(3, CHARS, LINES)]
    assert retained(sidecar, wrong) == [(3, 0, 0)]


async def test_each_checkpoint_counts_what_is_left_then(start_sidecar: StartSidecar,
                                                        upstream: Upstream) -> None:
    upstream.default = Reply(text=ACCEPTED)
    sidecar = await start_sidecar(init=openai_init(upstream, retentionCheckpoints=[1, 4]),
                                  config=PRICES, env=KEYS)
    suggestion = await accept_at(sidecar, "later")
    await eventually(lambda: retained(sidecar, suggestion), what="the 1 s checkpoint")
    sidecar.edit(uri("later"), (1, 4), (2, 0), "")  # "result = 0\n" goes at 1 s < t < 4 s
    await eventually(lambda: len(retained(sidecar, suggestion)) == 2, what="the 4 s one")
    assert retained(sidecar, suggestion) == [(1, CHARS, LINES), (4, CHARS - 11, LINES - 1)]


async def test_partial_acceptance_by_notification(start_sidecar: StartSidecar,
                                                  upstream: Upstream) -> None:
    upstream.default = Reply(text=ACCEPTED)
    sidecar = await start_sidecar(init=openai_init(upstream, retentionCheckpoints=[1]),
                                  config=PRICES, env=KEYS)
    sidecar.open(uri("partial"), SOURCE)
    [item] = await sidecar.complete(uri("partial"), 1, 4)
    assert item.command is not None
    suggestion = str(item.command.arguments[0])  # type: ignore[index]
    sidecar.edit(uri("partial"), (1, 4), (1, 4), "result = 0\n")  # accepted word by word
    sidecar.notify("meterline/suggestionAccepted",
                   {"suggestionId": suggestion, "acceptedText": "result = 0\n"})
    await eventually(lambda: retained(sidecar, suggestion), what="the retained event")
    accepted = [(e["chars"], e["lines"]) for e in sidecar.events("accepted")]
    assert accepted == [(11, 1)]
    assert retained(sidecar, suggestion) == [(1, 11, 1)]


async def test_replaced_and_unanswered_suggestions_are_rejected(
        start_sidecar: StartSidecar, upstream: Upstream) -> None:
    upstream.default = Reply(text="x = 1")
    sidecar = await start_sidecar(init=openai_init(
        upstream, rejectReplacedAfterSeconds=0.3, rejectUnansweredAfterSeconds=3,
        retentionCheckpoints=[60]), config=PRICES, env=KEYS)
    sidecar.open(uri("r"), SOURCE)
    [first] = await sidecar.complete(uri("r"), 1, 4)
    [second] = await sidecar.complete(uri("r"), 1, 4)  # replaces the first
    await sidecar.accept(uri("r"), second)
    sidecar.open(uri("ignored"), SOURCE)
    [ignored] = await sidecar.complete(uri("ignored"), 1, 4)  # nobody answers
    sidecar.open(uri("closed"), SOURCE)
    [closed] = await sidecar.complete(uri("closed"), 1, 4)
    sidecar.close(uri("closed"))
    ids = {str(item.command.arguments[0]): name  # type: ignore[index,union-attr]
           for item, name in ((first, "first"), (second, "second"), (ignored, "ignored"),
                              (closed, "closed"))}
    await eventually(lambda: len(sidecar.events("rejected")) == 3, what="three rejections")
    outcomes = {ids[e["suggestion_id"]]: e["type"] for e in sidecar.events()
                if e["type"] in ("accepted", "rejected")}
    assert outcomes == {"first": "rejected", "second": "accepted", "ignored": "rejected",
                        "closed": "rejected"}
    # Accepting a rejected suggestion afterwards changes nothing.
    result = await sidecar.client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="meterline.accept", arguments=[first.command.arguments[0]]))  # type: ignore
    assert result["outcome"] == "already rejected"
    await sidecar.stop()
    assert len(sidecar.events("accepted")) == 1


async def test_suggestions_reported_by_another_integration(start_sidecar: StartSidecar
                                                           ) -> None:
    sidecar = await start_sidecar(init={"retentionCheckpoints": [1]})
    sidecar.open(uri("copilot"), SOURCE)
    base = {"tool": "copilot", "provider": "github-copilot", "model": "gpt-4o-copilot",
            "kind": "inline", "inputTokens": 900, "outputTokens": 12, "costMicroUsd": 0,
            "language": "python", "workspace": "/work/project"}
    recorded = await sidecar.request("meterline/recordCall", {**base, "suggestion": {
        "id": "cp-1", "uri": uri("copilot"), "text": "return sum(items)",
        "range": {"start": {"line": 1, "character": 4}, "end": {"line": 1, "character": 4}}}})
    assert recorded["queued"] is True
    assert recorded["suggestionId"] == "cp-1"
    sidecar.notify("meterline/recordCall", {**base, "suggestion": {
        "id": "cp-2", "uri": uri("copilot"), "text": "pass",
        "range": {"start": {"line": 1, "character": 4}, "end": {"line": 1, "character": 4}}}})
    shown = await sidecar.request("meterline/suggestionShown", {"suggestionId": "cp-2"})
    assert shown == {"suggestionId": "cp-2", "outcome": "shown"}
    rejected = await sidecar.request("meterline/suggestionRejected", {"suggestionId": "cp-2"})
    assert rejected["outcome"] == "rejected"
    sidecar.edit(uri("copilot"), (1, 4), (1, 4), "return sum(items)")
    accepted = await sidecar.request("meterline/suggestionAccepted", {"suggestionId": "cp-1"})
    assert accepted["outcome"] == "accepted"
    await eventually(lambda: sidecar.events("retained"), what="the retained event")
    await sidecar.stop()
    calls = sidecar.calls()
    assert [(c["tool"], c["source"], c["input_tokens"]) for c in calls] == [
        ("copilot", "lsp", 900), ("copilot", "lsp", 900)]
    assert all(c["workspace"].startswith("ws-") for c in calls)  # a path never stored
    events = [(e["suggestion_id"], e["type"], e["chars"], e["call_id"]) for e in sidecar.events()]
    assert events == [("cp-1", "offered", 17, calls[0]["id"]),
                      ("cp-2", "offered", 4, calls[1]["id"]),
                      ("cp-2", "rejected", 4, calls[1]["id"]),
                      ("cp-1", "accepted", 17, calls[0]["id"]),
                      ("cp-1", "retained", 17, calls[0]["id"])]


@pytest.mark.parametrize("crlf", [False, True])
async def test_full_document_sync_is_followed_too(start_sidecar: StartSidecar,
                                                  upstream: Upstream, crlf: bool) -> None:
    upstream.default = Reply(text="return len(items)")
    sidecar = await start_sidecar(init=openai_init(upstream, retentionCheckpoints=[1]),
                                  config=PRICES, env=KEYS)
    eol = "\r\n" if crlf else "\n"
    source = SOURCE.replace("\n", eol)
    sidecar.open(uri("full"), source)
    [item] = await sidecar.complete(uri("full"), 1, 4)
    after = source.replace(f"    {eol}", f"    return len(items){eol}", 1)
    # A client that sends whole documents: the insertion, then a rename inside it.
    for version, text in ((2, after), (3, after.replace("len(items)", "len(things)"))):
        sidecar.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri("full"),
                                                                version=version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))
        if version == 2:
            await sidecar.client.workspace_execute_command_async(types.ExecuteCommandParams(
                command="meterline.accept", arguments=item.command.arguments))  # type: ignore
    await eventually(lambda: sidecar.events("retained"), what="the retained event")
    [event] = sidecar.events("retained")
    # The smallest edit turning "items)" into "things)" replaces "item": "s)" is kept.
    assert (event["chars"], event["lines"]) == (len("return len(s)"), 1)

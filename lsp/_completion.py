"""Metered inline completion: LSP 3.18 ``textDocument/inlineCompletion`` answered by the
upstream model the user configured (OpenAI-compatible, Anthropic or Ollama).

One request, start to end:

1. the text around the cursor (bounded, read from the touched lines only) becomes a prompt;
2. budget is reserved for an estimate first: an enforced budget with no room means no
   items, and the reason is said once;
3. the request goes to the upstream through one shared ``httpx.AsyncClient``;
4. the call is recorded with the usage the upstream reported (estimated, and flagged so,
   when it reported none) and replaces the reservation; the item offered is recorded as a
   suggestion, with ``meterline.accept`` as the item's command.

Steps 2 to 4 run in a task of their own: ``$/cancelRequest`` cancels the handler, not the
call, so a request already sent (and billed) is still recorded. Prompt and completion
text go to the upstream only; the store receives counts.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx
from lsprotocol import types

from agent import BudgetBlocked, Call, MeterlineError, estimate_tokens, new_id, price_call
from lsp._documents import Document, Pos
from lsp._outbox import Release, Settle
from lsp._reservations import Reservations
from lsp._suggestions import Suggestion

if TYPE_CHECKING:
    from agent import Reservation
    from lsp._budget import BudgetWatch
    from lsp._options import Upstream
    from lsp._outbox import StoreLink
    from lsp._suggestions import Suggestions

log = logging.getLogger("meterline.lsp")

TOOL = "meterline-lsp"
ACCEPT_COMMAND = "meterline.accept"
CURSOR = "<CURSOR>"
SYSTEM = ("You are a code completion engine. Reply with only the text to insert at "
          f"{CURSOR}: no explanation, no Markdown fences, nothing that is already before or "
          "after the cursor.")
_FENCED = re.compile(r"\A\s*```[^\n]*\n(.*?)\n?```\s*\Z", re.DOTALL)
#: Seconds a handler waits for the store before going on without it.
STORE_WAIT_S = 1.0


class Prompt(NamedTuple):
    prefix: str
    suffix: str
    language: str


def prompt_at(document: Document, pos: Pos, before: int, after: int) -> Prompt:
    return Prompt(document.before(pos, before), document.after(pos, after),
                  document.language_id)


def chat_text(prompt: Prompt) -> str:
    language = prompt.language or "code"
    return (f"Complete the {language} at {CURSOR}.\n\n"
            f"{prompt.prefix}{CURSOR}{prompt.suffix}")


def request_for(upstream: Upstream, prompt: Prompt) -> tuple[dict[str, str], dict[str, Any]]:
    """Headers and JSON body of the upstream request, in that provider's own format."""
    headers = {"content-type": "application/json"}
    key = upstream.api_key
    options = {"temperature": 0.2}
    if upstream.provider == "anthropic":
        if key:
            headers["x-api-key"] = key
        headers["anthropic-version"] = "2023-06-01"
        return headers, {"model": upstream.model, "max_tokens": upstream.max_tokens,
                         "system": SYSTEM, **options,
                         "messages": [{"role": "user", "content": chat_text(prompt)}]}
    if key:
        headers["authorization"] = f"Bearer {key}"
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": chat_text(prompt)}]
    if upstream.provider == "ollama":
        settings = {"num_predict": upstream.max_tokens, **options}
        if upstream.api == "chat":
            return headers, {"model": upstream.model, "messages": messages, "stream": False,
                             "options": settings}
        return headers, {"model": upstream.model, "prompt": prompt.prefix,
                         "suffix": prompt.suffix, "stream": False, "options": settings}
    if upstream.api == "completions":
        body: dict[str, Any] = {"model": upstream.model, "prompt": prompt.prefix,
                                "max_tokens": upstream.max_tokens, **options}
        if prompt.suffix:
            body["suffix"] = prompt.suffix
        return headers, body
    return headers, {"model": upstream.model, "messages": messages,
                     "max_tokens": upstream.max_tokens, "stream": False, **options}


def sent_text(body: Mapping[str, Any]) -> str:
    """Every piece of text the request carries (what an estimate of input tokens counts)."""
    parts = [body.get("system"), body.get("prompt"), body.get("suffix")]
    parts.extend(message.get("content") for message in body.get("messages", []))
    return "".join(part for part in parts if isinstance(part, str))


# -- replies ------------------------------------------------------------------------------

class TokenUsage(NamedTuple):
    """What the upstream reported; None where it reported nothing."""

    input: int | None
    output: int | None
    cache_read: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0
    reasoning: int = 0


class Reply(NamedTuple):
    text: str
    usage: TokenUsage
    request_id: str | None
    model: str | None


class UpstreamError(Exception):
    """The upstream failed. ``reached``: the request got there; ``billed``: it answered as
    a success (so the model ran), but with something we cannot read."""

    def __init__(self, message: str, *, reached: bool, billed: bool = False,
                 usage: TokenUsage | None = None) -> None:
        super().__init__(message)
        self.reached = reached
        self.billed = billed
        self.usage = usage


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100_000_000:
        return value
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def usage_openai(raw: Any) -> TokenUsage:
    usage = _dict(raw)
    prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    cached = _count(_dict(usage.get("prompt_tokens_details")).get("cached_tokens")) or 0
    reasoning = _count(_dict(usage.get("completion_tokens_details")).get("reasoning_tokens")) or 0
    if prompt is None:
        cached = 0
    return TokenUsage(input=None if prompt is None else prompt - min(cached, prompt),
                      output=completion, cache_read=min(cached, prompt or 0),
                      reasoning=min(reasoning, completion or 0))


def usage_anthropic(raw: Any) -> TokenUsage:
    usage = _dict(raw)
    writes = _count(usage.get("cache_creation_input_tokens")) or 0
    writes_1h = _count(_dict(usage.get("cache_creation")).get("ephemeral_1h_input_tokens")) or 0
    return TokenUsage(input=_count(usage.get("input_tokens")),
                      output=_count(usage.get("output_tokens")),
                      cache_read=_count(usage.get("cache_read_input_tokens")) or 0,
                      cache_write=writes, cache_write_1h=min(writes_1h, writes))


def usage_ollama(body: Mapping[str, Any]) -> TokenUsage:
    # Ollama leaves out prompt_eval_count when the prompt came from its cache.
    return TokenUsage(input=_count(body.get("prompt_eval_count")),
                      output=_count(body.get("eval_count")))


def error_text(body: Any) -> str:
    """The upstream's own error message, whatever its format, shortened."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        error = error.get("message") or error.get("type")
    text = error if isinstance(error, str) else ""
    return text[:200]


def parse_reply(upstream: Upstream, headers: Mapping[str, str], body: Any) -> Reply:
    """The completion text, usage and request id of a successful upstream response."""
    try:
        if upstream.provider == "anthropic":
            blocks = body["content"]
            text = "".join(block["text"] for block in blocks if block.get("type") == "text")
            usage = usage_anthropic(body.get("usage"))
            request_id = headers.get("request-id") or body.get("id")
        elif upstream.provider == "ollama":
            text = body["message"]["content"] if upstream.api == "chat" else body["response"]
            usage = usage_ollama(body)
            request_id = None
        else:
            choice = body["choices"][0]
            text = (choice["message"]["content"] if upstream.api == "chat" else choice["text"])
            usage = usage_openai(body.get("usage"))
            request_id = headers.get("x-request-id") or body.get("id")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise UpstreamError(f"unexpected response from {upstream.provider} "
                            f"(missing {exc})", reached=True, billed=True) from None
    model = body.get("model") if isinstance(body, dict) else None
    return Reply(text=text if isinstance(text, str) else "", usage=usage,
                 request_id=request_id if isinstance(request_id, str) and request_id
                 and len(request_id) <= 200 else None,
                 model=model if isinstance(model, str) and 0 < len(model) <= 200 else None)


def clean(text: str) -> str:
    """The text to insert: a reply wrapped in a Markdown fence despite the instructions is
    unwrapped."""
    fenced = _FENCED.match(text)
    return fenced.group(1) if fenced else text


class Context(NamedTuple):
    """Where a completion was asked for: what the call and the suggestion are tagged with."""

    uri: str
    anchor: Pos
    language: str | None
    workspace: str | None


def call_for(upstream: Upstream, usage: TokenUsage | None, *, sent: str, received: str,
             latency_ms: int, status: str, context: Context, request_id: str | None = None,
             model: str | None = None, prices: Mapping[str, Any] | None = None) -> Call:
    """The call to record; tokens the upstream did not report are estimated (and flagged).

    Priced here when ``prices`` is given; otherwise the cost stays None ("price it") and the
    outbox prices it off the request path (the price table costs ~150 µs a call).
    """
    usage = usage or TokenUsage(None, None)
    estimated = usage.input is None or usage.output is None
    call = Call(
        tool=TOOL, source="lsp", provider=upstream.provider, model=model or upstream.model,
        kind="inline",
        input_tokens=usage.input if usage.input is not None else estimate_tokens(sent),
        output_tokens=usage.output if usage.output is not None else estimate_tokens(received),
        cache_read_tokens=usage.cache_read, cache_write_tokens=usage.cache_write,
        cache_write_1h_tokens=usage.cache_write_1h, reasoning_tokens=usage.reasoning,
        estimated=estimated, latency_ms=latency_ms, status=status,  # type: ignore[arg-type]
        language=(context.language or None) and context.language[:64],
        workspace=context.workspace, request_id=request_id)
    if prices is not None:
        call.cost_micro_usd = price_call(call, dict(prices))
    return call


def describe(exc: httpx.HTTPError) -> str:
    kind = type(exc).__name__
    return f"{kind}: {exc}" if str(exc) else kind


# -- the service --------------------------------------------------------------------------

class _Job:
    """One completion request; ``cancelled`` once the client gave up on it."""

    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False


class CompletionService:
    """Answers inline completion requests from the upstream, metered."""

    def __init__(self, upstream: Upstream, *, link: StoreLink, watch: BudgetWatch,
                 suggestions: Suggestions, prices: Mapping[str, Any],
                 say: Callable[[str], None]) -> None:
        self.upstream = upstream
        self.link = link
        self.watch = watch
        self.suggestions = suggestions
        self.say = say
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(
            upstream.timeout_s, connect=min(5.0, upstream.timeout_s)))
        self._jobs: set[asyncio.Task[Suggestion | None]] = set()
        # What any request can cost at most: the whole prompt window and max_tokens.
        window = Prompt("x" * upstream.context_before, "x" * upstream.context_after, "")
        _, largest = request_for(upstream, window)
        bound = call_for(upstream, TokenUsage(estimate_tokens(sent_text(largest)) + 16,
                                              upstream.max_tokens),
                         sent="", received="", latency_ms=0, status="ok",
                         context=Context("", (0, 0), None, None), prices=prices)
        self.reservations = Reservations(
            link, cost_micro=bound.cost_micro_usd or 0,
            tokens=bound.input_tokens + bound.output_tokens,
            release=self._release, wait_s=STORE_WAIT_S)

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Let calls in flight finish (and be recorded), then close the HTTP client."""
        if self._jobs:
            await asyncio.wait(set(self._jobs), timeout=timeout_s)
        await self.reservations.aclose()
        await self.client.aclose()

    async def complete(self, prompt: Prompt, context: Context,
                       position: types.Position) -> list[types.InlineCompletionItem]:
        job = _Job()
        task = asyncio.create_task(self._run(prompt, context, job))
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)
        try:
            suggestion = await asyncio.shield(task)
        except asyncio.CancelledError:
            job.cancelled = True
            raise
        self.reservations.prepare_next()
        if suggestion is None:
            return []
        return [types.InlineCompletionItem(
            insert_text=suggestion.text, range=types.Range(start=position, end=position),
            command=types.Command(title="Accept (meterline)", command=ACCEPT_COMMAND,
                                  arguments=[suggestion.id]))]

    async def _run(self, prompt: Prompt, context: Context, job: _Job) -> Suggestion | None:
        try:
            return await self._metered(prompt, context, job)
        except Exception as exc:  # a completion must never take the sidecar down
            log.exception("meterline: inline completion failed")
            self.say(f"meterline: inline completion failed: {exc}")
            return None

    async def _metered(self, prompt: Prompt, context: Context, job: _Job) -> Suggestion | None:
        try:
            reservation = await self._reserve()
        except BudgetBlocked as blocked:
            self.watch.say_blocked(str(blocked))
            return None
        try:
            return await self._call(prompt, context, job, reservation)
        except BaseException:
            # Whatever went wrong before the call was recorded: give the budget back.
            self._release(reservation)
            raise

    async def _call(self, prompt: Prompt, context: Context, job: _Job,
                    reservation: Reservation | None) -> Suggestion | None:
        """Send the request and record the call; the reservation is settled or released."""
        if job.cancelled:
            self._release(reservation)
            return None
        upstream = self.upstream
        headers, body = request_for(upstream, prompt)
        sent = sent_text(body)
        started = time.perf_counter()
        try:
            response = await self.client.post(upstream.url, headers=headers, json=body)
            latency_ms = round((time.perf_counter() - started) * 1000)
            reply = self._reply(response)
        except (httpx.HTTPError, UpstreamError) as exc:
            latency_ms = round((time.perf_counter() - started) * 1000)
            reached = (exc.reached if isinstance(exc, UpstreamError)
                       else not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout
                                           | httpx.PoolTimeout | httpx.UnsupportedProtocol))
            text = exc if isinstance(exc, UpstreamError) else describe(exc)
            self.say(f"meterline: the completion upstream ({upstream.provider}) failed: {text}")
            if not reached:
                self._release(reservation)
                return None
            # It got there: an answer with usage counts it; without, the input it read is
            # estimated when the model may have run (a success we cannot read, a timeout),
            # and an HTTP error without usage costs nothing.
            usage = exc.usage if isinstance(exc, UpstreamError) else None
            if isinstance(exc, UpstreamError) and usage is None and not exc.billed:
                usage = TokenUsage(0, 0)
            call = call_for(upstream, usage, sent=sent, received="", latency_ms=latency_ms,
                            status="error", context=context)
            self._record(reservation, call)
            return None
        call = call_for(upstream, reply.usage, sent=sent, received=reply.text,
                        latency_ms=latency_ms, status="ok", context=context,
                        request_id=reply.request_id, model=reply.model)
        self._record(reservation, call)
        text = clean(reply.text)
        if not text or job.cancelled:
            return None
        suggestion = Suggestion(id=new_id(), text=text, uri=context.uri, call_id=call.id,
                                tool=TOOL, model=call.model, language=call.language,
                                workspace=call.workspace)
        self.suggestions.offer(suggestion, context.anchor)
        return suggestion

    def _reply(self, response: httpx.Response) -> Reply:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            message = error_text(body) or response.reason_phrase
            usage = None
            if isinstance(body, dict) and "usage" in body:
                usage = (usage_anthropic(body["usage"]) if self.upstream.provider == "anthropic"
                         else usage_openai(body["usage"]))
            raise UpstreamError(f"HTTP {response.status_code}: {message}", reached=True,
                                usage=usage)
        if not isinstance(body, dict):
            raise UpstreamError("the response is not a JSON object", reached=True, billed=True)
        return parse_reply(self.upstream, response.headers, body)

    async def _reserve(self) -> Reservation | None:
        """Hold budget for the call when an enforced budget exists (raises BudgetBlocked).

        Which budgets exist comes from the watcher (read once a second), so a completion
        without an enforced budget costs no store round trip; with one, a reservation is
        usually ready (``lsp._reservations``), made in the store's write transaction.
        """
        budgets = self.watch.budgets
        if budgets is None:
            try:
                budgets = await self.link.budgets(STORE_WAIT_S)
            except MeterlineError:  # config.toml is invalid: the watcher says so, once
                budgets = None
        if budgets is None:
            self._check_without_store()
            return None
        if not any(budget.mode == "enforce" for budget in budgets):
            self.reservations.drop()
            return None
        reservation = await self.reservations.take(budgets)
        if reservation is None:
            self._check_without_store()
        return reservation

    def _check_without_store(self) -> None:
        """The store cannot answer now (locked elsewhere): go by the last status seen."""
        if self.watch.blocked and self.watch.report is not None:
            binding = self.watch.report.binding
            raise BudgetBlocked(
                f"meterline: budget '{binding.name if binding else '?'}' is used up; inline "
                "completions are paused until it resets", budget=binding.name if binding
                else "?", resets_at=None)

    def _record(self, reservation: Reservation | None, call: Call) -> None:
        self.link.put(Settle(reservation.id, call) if reservation is not None else call)

    def _release(self, reservation: Reservation | None) -> None:
        if reservation is not None:
            self.link.put(Release(reservation.id))


__all__ = ["ACCEPT_COMMAND", "CompletionService", "Context", "Prompt", "prompt_at"]

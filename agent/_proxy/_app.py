"""The proxy itself: a raw ASGI app that forwards to the provider and meters every call.

Routes (``/anthropic/...`` and ``/openai/...``; the path after the prefix is appended to the
upstream origin):

* metered: ``POST /anthropic/v1/messages``, ``POST /openai/v1/chat/completions``,
  ``POST /openai/v1/completions``, ``POST /openai/v1/responses``;
* anything else under a prefix (``count_tokens``, ``/v1/models``, ``GET /v1/responses/{id}``)
  passes through byte for byte, logged by path only.

A metered request, in order: read the body; pick the key; reserve budget (or answer 429 in
the provider's format); forward; answer the client with the upstream's status and headers as
soon as they arrive; forward the body event by event while a meter reads usage from it; at
the end build the call, store it (awaited: durable), and only then send the stream's last
event and the end of the body. Whatever happens — client gone, upstream cut, error status,
shutdown — the request ends as exactly one stored call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from agent._budget import Budget
from agent._config import ModelPrice
from agent._errors import BudgetBlocked, StoreError
from agent._events import Call
from agent._ids import new_id
from agent._pricing import Estimator
from agent._proxy import _keys
from agent._proxy._headers import (
    HOP_BY_HOP,
    QUOTA_PREFIXES,
    Headers,
    header,
    kind_of,
    request_id_of,
    tool_of,
    vendor_quotas,
)
from agent._proxy._record import Outcome, build_call
from agent._proxy._replies import error_body, error_headers
from agent._proxy._request import (
    INJECTABLE,
    RequestInfo,
    inject_stream_usage,
    needs_usage_injection,
    read_request,
)
from agent._proxy._upstream import UPSTREAM_ERRORS, Response, Upstream
from agent._proxy._usage import Api, Meter, meter_for
from agent._status import money
from agent._store import Reservation, Store

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("meterline.proxy")

PREFIXES = {"/anthropic": "anthropic", "/openai": "openai"}
METERED: dict[tuple[str, str], Api] = {
    ("anthropic", "/v1/messages"): "anthropic",
    ("openai", "/v1/chat/completions"): "openai-chat",
    ("openai", "/v1/completions"): "openai-completions",
    ("openai", "/v1/responses"): "openai-responses",
}
#: A request body larger than this is refused (413): no real prompt is this big.
MAX_REQUEST_BODY = 64 * 2**20
#: Budgets older than this are re-read (config.toml edits apply about this long after).
BUDGET_TTL_S = 1.0
#: Budgets read less than this long ago are used while a re-read runs in the background;
#: while requests come at least this often, the budgets are re-read every BUDGET_TTL_S.
BUDGET_STALE_S = 5.0
#: Vendor quota figures are written at most this often per provider.
QUOTA_FLUSH_S = 0.5
#: Calls' log lines are made at most this long after the call (``CallLog``).
CALL_LOG_AFTER_S = 0.05


class AbortResponse(Exception):
    """Raised after the response started, to close the client connection without ending the
    body: the client then sees an incomplete response, as the upstream's was."""


class _ClientLeft(Exception):
    """The client left before its request body was whole."""


class _TooLarge(Exception):
    """The request body is over ``MAX_REQUEST_BODY``."""


class _Refused(Exception):
    """A budget refused the request (answered 429) while its body was going upstream."""


@dataclass
class ProxyOptions:
    upstreams: dict[str, str]
    prices: dict[str, ModelPrice] = field(default_factory=dict)
    #: After the client leaves, how long to keep reading the upstream for its usage.
    disconnect_grace_s: float = 5.0
    read_timeout_s: float = 600.0
    connect_timeout_s: float = 10.0


def route(path: str) -> tuple[str, str] | None:
    """``/anthropic/v1/messages`` → ``("anthropic", "/v1/messages")``; None off the prefixes."""
    for prefix, provider in PREFIXES.items():
        if path == prefix or path.startswith(prefix + "/"):
            return provider, path[len(prefix):] or "/"
    return None


def upstream_url(origin: str, scope: Scope, provider: str, rest: str) -> str:
    """The upstream URL of a request: the path after the prefix as the client encoded it
    (``raw_path``; ``rest`` is its decoded form, used if the prefix itself was encoded), and
    the query string."""
    raw = scope.get("raw_path")
    prefix = "/" + provider
    if isinstance(raw, bytes) and raw.startswith(prefix.encode()):
        rest = raw[len(prefix):].decode("latin-1") or "/"
    url = origin.rstrip("/") + rest
    query: bytes = scope["query_string"]
    return f"{url}?{query.decode('latin-1')}" if query else url


def forwardable(headers: Headers, *drop: bytes) -> Headers:
    return [(k, v) for k, v in headers
            if k not in HOP_BY_HOP and k not in drop and k != b"content-length"]


def new_client(options: ProxyOptions) -> Upstream:
    """The one pooled upstream client of the process."""
    return Upstream(connect_timeout_s=options.connect_timeout_s,
                    read_timeout_s=options.read_timeout_s)


class QuotaRecorder:
    """Keeps the latest quota headers per provider and reads and writes them in the
    background, at most every ``QUOTA_FLUSH_S``: never on a request's path."""

    def __init__(self, store: Store) -> None:
        self._store = store
        #: provider → (the quota headers of its latest response, when it came, epoch ms)
        self._latest: dict[str, tuple[Headers, int]] = {}
        self._task: asyncio.Task[None] | None = None

    def offer(self, provider: str, headers: Headers) -> None:
        """Note a response's headers (cheap: the parsing waits for the flush)."""
        found = [(k, v) for k, v in headers if k.startswith(QUOTA_PREFIXES)]
        if not found:
            return
        self._latest[provider] = (found, int(time.time() * 1000))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(QUOTA_FLUSH_S)
        await self.flush()

    async def flush(self) -> None:
        pending, self._latest = self._latest, {}
        for provider, (headers, at_ms) in pending.items():
            quotas = vendor_quotas(headers, at_ms)
            if not quotas:
                continue
            try:
                await self._store.set_vendor_quota(provider, quotas)
            except StoreError as exc:
                log.warning("could not record %s quota headers: %s", provider, exc)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()


class CallLog:
    """The one log line per call, made off the requests' path: the calls are kept and their
    lines made together at most ``CALL_LOG_AFTER_S`` later (or at ``flush``). Made at once,
    a line cost about 40 µs of the proxy's time per request (the record, its time stamp,
    the formatting), before the next request of the moment could be served."""

    def __init__(self) -> None:
        self._pending: list[tuple[str, int | None, Call, bool]] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, path: str, http_status: int | None, call: Call, client_gone: bool) -> None:
        self._pending.append((path, http_status, call, client_gone))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(CALL_LOG_AFTER_S, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        for path, http_status, call, client_gone in pending:
            cost = "?" if call.cost_micro_usd is None else money(call.cost_micro_usd)
            log.info("POST %s %s %s %s %s in=%d cache=%d/%d out=%d %s%s %dms%s",
                     path, http_status or "-", call.status, call.tool, call.model,
                     call.input_tokens, call.cache_read_tokens, call.cache_write_tokens,
                     call.output_tokens, cost, "~" if call.estimated else "",
                     call.latency_ms or 0, " (client left)" if client_gone else "")


class Proxy:
    """The ASGI application. ``await proxy.aclose()`` when done."""

    def __init__(self, store: Store, options: ProxyOptions,
                 client: Upstream | None = None) -> None:
        self.store = store
        self.options = options
        self.client = client or new_client(options)
        self.keys = _keys.KeyCache()
        self.estimator = Estimator(options.prices)
        self.quotas = QuotaRecorder(store)
        self.calls_log = CallLog()
        self._budgets: tuple[float, list[Budget]] = (-1e9, [])
        self._budgets_read: asyncio.Future[list[Budget]] | None = None
        self._budgets_used = -1e9
        self._budgets_timer: asyncio.TimerHandle | None = None
        self._closing = False

    async def aclose(self) -> None:
        self._closing = True
        if self._budgets_timer is not None:
            self._budgets_timer.cancel()
        self.calls_log.flush()
        await self.quotas.aclose()
        await self.client.aclose()

    async def budgets(self) -> list[Budget]:
        """The budgets in force: at most about ``BUDGET_TTL_S`` old while requests come.

        While requests come at least every ``BUDGET_STALE_S``, the budgets are re-read in
        the background every ``BUDGET_TTL_S`` (an edit of config.toml applies about a second
        later), and a request uses the budgets read last: the read (a hand-off to a worker
        thread and back) is never on the path of a busy proxy's requests, where it used to
        hold up every request of that moment by a wake-up of each thread. After a longer
        pause (or at the first request) the request waits for a read. Requests that wait
        together share one read."""
        now = self._budgets_used = time.monotonic()
        stamp, budgets = self._budgets
        age = now - stamp
        if age <= BUDGET_TTL_S:
            return budgets
        self._reread_budgets()
        if age <= BUDGET_STALE_S:
            return budgets
        assert self._budgets_read is not None
        return await asyncio.shield(self._budgets_read)

    def _reread_budgets(self) -> None:
        self._budgets_timer = None
        if self._budgets_read is None or self._budgets_read.done():
            self._budgets_read = asyncio.ensure_future(self._read_budgets())
            self._budgets_read.add_done_callback(_budgets_read_done)

    async def _read_budgets(self) -> list[Budget]:
        try:
            budgets = await self.store.budgets()
        finally:
            # Read again in a second while requests still come (a failed read too: the
            # budgets read before stay in force until then).
            if time.monotonic() - self._budgets_used <= BUDGET_STALE_S \
                    and self._budgets_timer is None and not self._closing:
                self._budgets_timer = asyncio.get_running_loop().call_later(
                    BUDGET_TTL_S, self._reread_budgets)
        self._budgets = (time.monotonic(), budgets)
        return budgets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        target = route(scope["path"])
        if target is None:
            body = error_body("openai", "not_found",
                              f"meterline proxy: no route {scope['path']!r}; use /anthropic/... "
                              "or /openai/...")
            await _reply(send, 404, error_headers(body), body)
            return
        provider, rest = target
        api = METERED.get((provider, rest)) if scope["method"] == "POST" else None
        if api is None:
            await self._pass_through(scope, receive, send, provider, rest)
        else:
            await Exchange(self, scope, receive, send, provider, rest, api).run()

    async def upstream_headers(self, provider: str, headers: Headers, *drop: bytes
                               ) -> Headers | str:
        """Headers for the upstream, with the stored key put in where wanted; or why a key
        was wanted and cannot be given."""
        out = forwardable(headers, b"expect", *drop)
        if _keys.wants_stored_key(provider, headers):
            refusal = _keys.browser_refusal(headers)
            if refusal:
                return refusal
            key = await self.keys.get(provider)
            if key is None:
                return (f"meterline proxy: no {provider} API key. Send your own, or store "
                        f"one with `meterline keys set {provider}`.")
            out = _keys.with_key(provider, out, key)
        return out

    async def _pass_through(self, scope: Scope, receive: Receive, send: Send, provider: str,
                            rest: str) -> None:
        started = time.perf_counter()
        headers = await self.upstream_headers(provider, list(scope["headers"]))
        if isinstance(headers, str):
            await _reply_no_key(send, provider, headers)
            return
        url = upstream_url(self.options.upstreams[provider], scope, provider, rest)
        length = header(scope["headers"], b"content-length")
        chunked = header(scope["headers"], b"transfer-encoding") is not None
        body: bytes | AsyncIterator[bytes] = b""  # HTTP/1.1: neither header, no body
        if length is not None or chunked:
            body = _request_stream(receive)  # streamed through as it comes
            if length is not None:
                headers.append((b"content-length", length.encode()))
        try:
            response = await self.client.send(scope["method"], url, headers, body)
        except UPSTREAM_ERRORS as exc:
            log.warning("%s %s: upstream unreachable (%s)", scope["method"], scope["path"],
                        type(exc).__name__)
            await _reply_unreachable(send, provider)
            return
        try:
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": forwardable(response.headers) + _length(response)})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except UPSTREAM_ERRORS as exc:
            raise AbortResponse(f"upstream cut: {type(exc).__name__}") from None
        finally:
            await response.aclose()
            log.info("%s %s %s pass-through %dms", scope["method"], scope["path"],
                     response.status_code, (time.perf_counter() - started) * 1000)


class Exchange:
    """One metered request, from its first byte to its one stored call."""

    def __init__(self, proxy: Proxy, scope: Scope, receive: Receive, send: Send,
                 provider: str, rest: str, api: Api) -> None:
        self.proxy = proxy
        self.scope = scope
        self.receive = receive
        self.send = send
        self.provider = provider
        self.rest = rest
        self.api = api
        # Replaced by the response's own meter once the upstream answers; until then an
        # empty tally (what a call cut before any answer is recorded with).
        self.meter: Meter = meter_for(api, streaming=False)
        self.http_status: int | None = None
        self.started = time.perf_counter()
        self.headers: Headers = list(scope["headers"])
        self.tool = tool_of(self.headers)
        self.kind = kind_of(self.tool)
        self.call_id = new_id()
        #: The client closed its connection (set by ``_watch_disconnect``).
        self.client_gone = False
        #: Set once the exchange is over (after the response's last bytes).
        self._answered = False
        #: When a departed client's response is given up (its grace period's end).
        self._give_up_at = 0.0
        self._body = b""
        #: The body is all in (``_body``); until then, ``_incoming`` brings it.
        self._whole = False
        self._incoming: AsyncIterator[bytes] | None = None
        self._info: RequestInfo | None = None
        #: Tells when the client leaves, once the body is in (``_watch_disconnect``).
        self._watcher: asyncio.Task[None] | None = None
        self.reservation: Reservation | None = None
        self.recorded = False
        self._deferred_start: Message | None = None
        #: While the body is pumped: the deadline a departed client puts on it.
        self._deadline: asyncio.Timeout | None = None

    # -- the life of the request ------------------------------------------------------------

    async def run(self) -> None:
        message = await self.receive()
        if message["type"] == "http.disconnect":
            return  # gone before the request was whole: nothing was sent upstream
        body = message.get("body", b"")
        if not message.get("more_body", False):
            self._body, self._whole = body, True
            self._watch()
        elif self.api not in INJECTABLE and header(self.headers, b"content-length"):
            # No usage to ask for: the body goes as it comes (its last byte once the budget
            # reservation, which needs all of it, is made). Only with a length: a chunked
            # body is read whole, so that the upstream has its length as always.
            self._incoming = self._body_through(body)
        else:
            whole = await self._read_body(body)
            if whole is None:
                return
            self._body, self._whole = whole, True
        try:
            await self._forward()
        except BaseException:
            if self._watcher is not None:
                self._watcher.cancel()
            # Cancelled (shutdown ran out of time) or a bug: the call is still recorded.
            if not self.recorded and self._whole:
                with contextlib.suppress(Exception):
                    await self._record("cut", self.http_status, self.meter, None)
            raise
        # Answered (or the client left): the watcher ends by itself, as the server tells it
        # the exchange is over. Cancelled instead, it left a cycle of garbage per request
        # (its CancelledError, tracebacks, frames, and through them this exchange and its
        # body) that only the collector could free: 40 µs of a request's CPU on average,
        # and pauses of 1-3 ms at ten concurrent streams.
        self._answered = True

    @property
    def info(self) -> RequestInfo:
        """What metering needs of the request body, read when first needed: before the
        request goes upstream if the usage it asks for depends on it (an OpenAI chat or
        completions request, which may stream without asking for it); before its last part
        goes if a budget is in force (the reservation); else once it went (``read_request``
        takes 0.15 ms for a 250 KB body, which the upstream's own time then hides)."""
        if self._info is None:
            assert self._whole, "the request body is read once it is all in"
            self._info = read_request(self.api, self._body)
        return self._info

    def _read_info(self) -> None:
        if self._whole:
            self._info = self.info

    def _needs_usage_injection(self) -> bool:
        # The API first: a body that never needs it is not read before it goes. (Reading
        # "stream" from its bytes instead of decoding it would cost more, measured.)
        if self.api not in INJECTABLE:
            return False
        return needs_usage_injection(self.api, self.info) and self.info.valid_json

    async def _read_body(self, first: bytes) -> bytes | None:
        """The rest of the body, then the whole; None if the client left or sent too much
        (answered 413)."""
        parts, size = [first], len(first)
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                return None  # gone before the request was whole: nothing was sent upstream
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_REQUEST_BODY:
                await self._reply_too_large()
                return None
            parts.append(chunk)
            if not message.get("more_body", False):
                self._watch()
                return b"".join(parts)

    async def _body_through(self, first: bytes) -> AsyncIterator[bytes]:
        """The body as it comes, to be sent upstream as it comes ("cut-through": a coding
        agent's 100-500 KB request reaches the upstream while its last bytes are still on
        their way to the proxy), kept to be read once whole. Its last byte is held until
        the budget reservation, which needs the whole body, is made: a refused request
        never reaches the upstream whole (nothing to answer or bill). Raises
        ``_ClientLeft``, ``_TooLarge`` or ``_Refused`` (answered): the upstream's
        connection, with part of a request on it, is then closed."""
        parts, size = [first], len(first)
        if len(first) > 1:
            yield first[:-1]
        held = first[-1:]  # the last byte received, not sent yet
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise _ClientLeft
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_REQUEST_BODY:
                raise _TooLarge
            if chunk:
                parts.append(chunk)
                yield held + chunk[:-1]
                held = chunk[-1:]
            if not message.get("more_body", False):
                break
        self._body, self._whole = b"".join(parts), True
        self._watch()
        if not await self._reserve():
            raise _Refused
        if held:
            yield held

    async def _whole_body(self) -> bool:
        """Wait for the rest of a body that was going upstream as it came (the request
        stopped on its way, and its call is to be recorded): False if the client left, sent
        too much (answered 413) or a budget refused it (answered 429, recorded)."""
        if self._whole:
            return True
        try:
            if self._incoming is not None:
                async for _ in self._incoming:
                    pass
        except (_ClientLeft, _Refused):
            return False  # (a refusal was answered)
        except _TooLarge:
            await self._reply_too_large()
            return False
        return self._whole

    async def _reply_too_large(self) -> None:
        body = error_body(self.provider, "not_found", "meterline proxy: request body "
                          f"larger than {MAX_REQUEST_BODY // 2**20} MiB")
        await _reply(self.send, 413, error_headers(body), body)

    def _watch(self) -> None:
        """The body is in: from now on, receiving tells when the client leaves."""
        self._watcher = asyncio.create_task(self._watch_disconnect())

    async def _watch_disconnect(self) -> None:
        while True:
            message = await self.receive()
            if self._answered:
                return  # (what the server says once the response was sent)
            if message["type"] == "http.disconnect":
                self.client_gone = True
                self._give_up_at = asyncio.get_running_loop().time() \
                    + self.proxy.options.disconnect_grace_s
                self._give_up_later()
                return

    async def _forward(self) -> None:
        headers = await self.proxy.upstream_headers(self.provider, self.headers,
                                                    b"accept-encoding")
        if isinstance(headers, str):
            if await self._whole_body():
                await self._record("no_key", 401, meter_for(self.api, streaming=False), None)
                await _reply_no_key(self.send, self.provider, headers)
            return
        # Identity encoding on metered routes: the meter reads what the client receives.
        headers.append((b"accept-encoding", b"identity"))
        upstream_body: bytes | AsyncIterator[bytes]
        inject = False
        if self._whole:
            if not await self._reserve():
                return
            inject = self._needs_usage_injection()
            upstream_body = inject_stream_usage(self._body, self.info) if inject \
                else self._body
        else:
            assert self._incoming is not None
            upstream_body = self._incoming
            length = header(self.headers, b"content-length")
            if length is not None:
                headers.append((b"content-length", length.encode()))
        url = upstream_url(self.proxy.options.upstreams[self.provider], self.scope,
                           self.provider, self.rest)
        deadline = asyncio.timeout(None)  # a departed client's grace, while the head comes
        try:
            async with deadline:
                self._deadline = deadline
                if self.client_gone:
                    self._give_up_later()
                response = await self.proxy.client.send("POST", url, headers, upstream_body,
                                                        sent=self._read_info)
        except UPSTREAM_ERRORS as exc:
            if deadline.expired():
                # The client left and the upstream had not answered within the grace
                # period: the request is cut there (its connection closed: the provider
                # stops), and recorded as a cut call with nothing reported.
                await self._record("cut", None, meter_for(self.api, streaming=False), None)
                return
            log.warning("POST %s: upstream unreachable (%s)", self.scope["path"],
                        type(exc).__name__)
            if await self._whole_body():
                await self._record("unreachable", 502, meter_for(self.api, streaming=False),
                                   None)
                await _reply_unreachable(self.send, self.provider)
            return
        except (_ClientLeft, _Refused):
            return  # gone, or refused (answered): the upstream's connection is closed
        except _TooLarge:
            await self._reply_too_large()
            return
        finally:
            self._deadline = None
        try:
            await self._relay(response, strip=inject)
        finally:
            await response.aclose()

    async def _reserve(self) -> bool:
        budgets = await self.proxy.budgets()
        if not budgets:
            return True
        info = self.info
        cost = self.proxy.estimator.cost_micro(self.provider, info.model, info.input_estimate,
                                               info.max_output)
        try:
            self.reservation = await self.proxy.store.reserve(
                budgets, cost_micro=cost, tokens=info.input_estimate + info.max_output,
                lease=True)
        except BudgetBlocked as blocked:
            await self._record("blocked", 429, meter_for(self.api, streaming=False), None)
            body = error_body(self.provider, "budget", str(blocked))
            extra = [(b"x-meterline-budget", f"blocked; budget={blocked.budget}; resets="
                      f"{blocked.resets_at or 'unknown'}".encode())]
            if blocked.resets_at:
                extra.append((b"retry-after", _seconds_until(blocked.resets_at)))
            await _reply(self.send, 429, error_headers(body, extra), body)
            return False
        return True

    async def _relay(self, response: Response, *, strip: bool) -> None:
        """Stream the upstream response to the client while metering it."""
        upstream_headers = response.headers
        self.proxy.quotas.offer(self.provider, upstream_headers)
        content_type = header(upstream_headers, b"content-type") or ""
        streaming = "text/event-stream" in content_type
        meter = self.meter = meter_for(self.api, streaming=streaming, strip_usage_chunk=strip)
        self.http_status = response.status_code
        # A body encoded despite the identity we asked for is decoded for meter and client
        # alike (gzip, deflate); an encoding we cannot undo passes as it is, unmetered.
        encoded = (header(upstream_headers, b"content-encoding") or "identity") != "identity"
        decode = encoded and response.decodable
        drop = (b"content-encoding",) if decode else ()
        out_headers = forwardable(upstream_headers, *drop)
        if not (streaming or decode):
            out_headers += _length(response)
        out_headers += [(b"x-meterline-call-id", self.call_id.encode())]
        warning = self._budget_warning()
        if warning:
            out_headers.append((b"x-meterline-budget", warning.encode()))
        start = {"type": "http.response.start", "status": response.status_code,
                 "headers": out_headers}
        if streaming and not response.body_ready():
            await self._send(start)  # the time to first byte of a stream is the client's
        else:
            # A plain body is only of use whole; a stream's first event came with its head:
            # the head goes out with the first bytes, so that the client wakes up once.
            self._deferred_start = start

        cut = await self._pump(response, meter, decode, streaming)
        tail = meter.finish()
        # A stream is whole when its last event came; a plain body when it was not cut.
        complete = meter.tally.complete or (not cut and not streaming)
        call = await self._record("complete" if complete else "cut", response.status_code,
                                  meter, request_id_of(upstream_headers), log_now=False)
        try:
            if cut and not complete and not self.client_gone:
                # The upstream's body broke off: so does ours, so the client knows.
                await self._send({"type": "http.response.body", "body": tail,
                                  "more_body": True})
                raise AbortResponse("upstream response cut short")
            self._answered = True  # (before: the server wakes the watcher as it ends)
            await self._send({"type": "http.response.body", "body": tail, "more_body": False})
        finally:
            # The log line is made after the last bytes went out: not on their path.
            if call is not None:
                self._log_call(call, response.status_code)

    async def _pump(self, response: Response, meter: Meter, decode: bool, streaming: bool
                    ) -> bool:
        """Forward the body until it ends; return True if it was cut short (upstream error,
        or the client left and the upstream did not finish within the grace period).

        The body is read in this task; a client that leaves sets a deadline on it (see
        ``_watch_disconnect``): no second task, no wait on two things per request."""
        try:
            async with asyncio.timeout(None) as deadline:
                self._deadline = deadline
                if self.client_gone:
                    self._give_up_later()
                chunks = response.aiter_decoded() if decode else response.aiter_raw()
                async for chunk in chunks:
                    out = meter.feed(chunk)
                    if out:
                        await self._send({"type": "http.response.body", "body": out,
                                          "more_body": True})
                    elif streaming and self._deferred_start is not None:
                        await self._send_start()  # the first event is not whole yet
        except UPSTREAM_ERRORS as error:
            if not deadline.expired():  # else: the client left and the grace period ran out
                log.warning("POST %s: upstream cut (%s)", self.scope["path"],
                            type(error).__name__)
            return True
        finally:
            self._deadline = None
        return False

    def _give_up_later(self) -> None:
        """The client left: keep waiting and reading a little (the grace period, counted
        from its leaving, whether the upstream's head was in or not), for the usage."""
        if self._deadline is not None and self._deadline.when() is None:
            self._deadline.reschedule(self._give_up_at)

    async def _send(self, message: Message) -> None:
        if self.client_gone:
            return
        if self._deferred_start is not None:
            await self._send_start()
        await self.send(message)

    async def _send_start(self) -> None:
        start, self._deferred_start = self._deferred_start, None
        if start is not None and not self.client_gone:
            await self.send(start)

    def _budget_warning(self) -> str | None:
        if self.reservation is None or not self.reservation.warnings:
            return None
        status = self.reservation.warnings[0]
        percent = f"{(status.fraction or 0) * 100:.0f}%"
        limit = money(status.limit_micro) if status.limit_micro is not None else \
            f"{status.limit_tokens} tokens"
        return f"warn; budget={status.name}; used={percent} of {limit}"

    async def _record(self, outcome: Outcome, http_status: int | None, meter: Meter,
                      request_id: str | None, *, log_now: bool = True) -> Call | None:
        """Build the call and store it, durably, with the reservation settled in the same
        transaction. A store that cannot be written fails the response (after one retry).

        Returns the call stored (None if one was already); its log line is written here, or
        by the caller (``_log_call``) when ``log_now`` is false."""
        if self.recorded:
            return None
        self.recorded = True
        call = build_call(
            provider=self.provider, info=self.info, tally=meter.tally, http_status=http_status,
            outcome=outcome, tool=self.tool, kind=self.kind, request_id=request_id,
            latency_ms=int((time.perf_counter() - self.started) * 1000),
            prices=self.proxy.options.prices, call_id=self.call_id)
        try:
            await self.proxy.store.settle(self.reservation, [call])
        except StoreError:
            await asyncio.sleep(0.1)
            try:
                await self.proxy.store.settle(self.reservation, [call])
            except StoreError as exc:
                log.error("POST %s: call NOT recorded, response failed: %s",
                          self.scope["path"], exc)
                raise AbortResponse("the call could not be stored") from None
        if log_now:
            self._log_call(call, http_status)
        return call

    def _log_call(self, call: Call, http_status: int | None) -> None:
        self.proxy.calls_log.add(self.scope["path"], http_status, call, self.client_gone)


# -- small helpers --------------------------------------------------------------------------

def _budgets_read_done(read: asyncio.Future[list[Budget]]) -> None:
    """A background re-read that failed (config.toml now invalid, say) is logged; the
    budgets read before stay in force until a request has to wait for a read."""
    if not read.cancelled() and read.exception() is not None:
        log.warning("could not re-read the budgets: %s", read.exception())


def _length(response: Response) -> Headers:
    value = response.header(b"content-length")
    return [(b"content-length", value.encode())] if value is not None else []


async def _request_stream(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _reply(send: Send, status: int, headers: Headers, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _reply_no_key(send: Send, provider: str, message: str) -> None:
    body = error_body(provider, "no_key", message)
    await _reply(send, 401, error_headers(body), body)


async def _reply_unreachable(send: Send, provider: str) -> None:
    body = error_body(provider, "upstream", f"meterline proxy: the {provider} upstream "
                      "could not be reached")
    await _reply(send, 502, error_headers(body), body)


def _seconds_until(iso: str) -> bytes:
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return b"60"
    return str(max(1, int((when - datetime.now(UTC)).total_seconds()))).encode()

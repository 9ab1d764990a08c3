"""The one call event a proxied request becomes: a pure function of what was seen.

Rules (docs/proxy.md, "Failure cases"):

* The provider reported usage and the response completed: those figures, exactly.
* A 2xx whose usage is missing or cut short: tokens estimated (input from the request's
  size, output from the text seen), ``estimated=True``, never zero input.
* A stream that ended before its last event (upstream closed, client left and the grace
  period ran out, the proxy shut down): status ``error``, usage as far as reported, the
  rest estimated.
* The upstream answered 4xx/5xx: status ``error``, tokens as the error body reported them
  (providers do not bill refused requests, so normally 0) and cost 0, not estimated.
* The request never reached the provider (budget refused, no key, upstream unreachable):
  status ``blocked`` or ``error``, zero tokens, zero cost — it is recorded, it costs nothing.
"""

from __future__ import annotations

from typing import Literal

from agent._config import ModelPrice
from agent._estimate import CHARS_PER_TOKEN
from agent._events import Call
from agent._pricing import price_call
from agent._proxy._request import RequestInfo
from agent._proxy._usage import Tally

Outcome = Literal["complete", "cut", "blocked", "no_key", "unreachable"]


def build_call(*, provider: str, info: RequestInfo, tally: Tally, http_status: int | None,
               outcome: Outcome, tool: str, kind: str, request_id: str | None,
               latency_ms: int, prices: dict[str, ModelPrice], call_id: str | None = None
               ) -> Call:
    fields: dict[str, object] = {
        "tool": tool, "source": "proxy", "provider": provider, "kind": kind,
        "model": (tally.model or info.model or "unknown")[:200],
        "latency_ms": max(0, min(latency_ms, 86_400_000)),
        "request_id": request_id or tally.response_id,
    }
    if call_id is not None:
        fields["id"] = call_id
    if outcome in ("blocked", "no_key", "unreachable"):
        call = Call(**fields, status="blocked" if outcome == "blocked" else "error",  # type: ignore[arg-type]
                    cost_micro_usd=0)
        call.request_id = None
        return call
    if http_status is not None and http_status >= 400:
        call = Call(**fields, status="error", input_tokens=tally.input_tokens or 0,  # type: ignore[arg-type]
                    output_tokens=tally.output_tokens or 0,
                    cache_read_tokens=tally.cache_read_tokens,
                    cache_write_tokens=tally.cache_write_tokens,
                    cache_write_1h_tokens=min(tally.cache_write_1h_tokens,
                                              tally.cache_write_tokens))
        call.cost_micro_usd = price_call(call, prices) if call.total_tokens else 0
        return call

    finished = outcome == "complete" and tally.complete
    estimated = False
    input_tokens = tally.input_tokens
    cached = tally.cache_read_tokens + tally.cache_write_tokens
    if input_tokens is None or input_tokens + cached == 0:
        # No call reads nothing: a missing (or zero) input figure is an estimate's job.
        input_tokens = max(1, info.input_estimate - cached) if cached == 0 else 0
        estimated = cached == 0
    output_tokens = tally.output_tokens
    from_text = -(-tally.output_chars // CHARS_PER_TOKEN)
    if output_tokens is None or not finished:
        seen = output_tokens or 0
        output_tokens = max(seen, from_text)
        if finished and output_tokens == 0:
            output_tokens = max(1, -(-tally.body_bytes // (CHARS_PER_TOKEN * 4)))
        # A cut stream's figures are partial even where the provider reported them.
        estimated = True
    call = Call(**fields,  # type: ignore[arg-type]
                status="ok" if finished and not tally.error else "error",
                input_tokens=input_tokens, output_tokens=output_tokens,
                cache_read_tokens=tally.cache_read_tokens,
                cache_write_tokens=tally.cache_write_tokens,
                cache_write_1h_tokens=min(tally.cache_write_1h_tokens, tally.cache_write_tokens),
                reasoning_tokens=min(tally.reasoning_tokens, output_tokens),
                estimated=estimated)
    call.cost_micro_usd = price_call(call, prices)
    return call

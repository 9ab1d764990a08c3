"""The local metering proxy: tools point their base URL at it, it forwards to the provider
and stores one call event per request (docs/proxy.md).

    _sse        incremental server-sent-event splitting
    _usage      usage from every response shape (pure, incremental meters)
    _request    what a request says (model, stream, limits); the stream-usage injection
    _headers    attribution, provider request ids, rate-limit headers, hop-by-hop headers
    _keys       which key goes upstream (the client's, or the stored one)
    _record     the one call a request becomes (pure)
    _replies    the proxy's own answers, in each provider's error format
    _app        the ASGI application: forwarding and metering
    _server     binding 127.0.0.1, running uvicorn on the caller's loop
    _run        logging set-up for `meterline agent` and `up`
"""

from __future__ import annotations

from agent._proxy._server import HOST, ProxyError, bind, serve

__all__ = ["HOST", "ProxyError", "bind", "serve"]

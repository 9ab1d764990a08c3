"""Running the sidecar over stdin/stdout, and leaving cleanly.

pygls's ``start_io`` is not used because the sidecar must finish its own work when the
editor goes away without a ``shutdown`` (the pipe closed): store what is queued, or spill
it to a file. Only LSP frames ever reach stdout; everything else goes to stderr.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from typing import Any, BinaryIO

from pygls.exceptions import JsonRpcException
from pygls.io_ import StdinAsyncReader, StdoutWriter, run_async

from lsp._server import MeterlineServer, create_server

log = logging.getLogger("meterline.lsp")


class ClientErrors(logging.Filter):
    """pygls's records of what a client sent wrong, made fit for the log: one line, at
    warning, no traceback (the client has its -32602 answer; a traceback per bad message
    buried the log), and never the message's params (a document's text can be in them).
    Faults of ours keep their traceback, without the params."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("pygls"):
            return True
        text = str(record.msg)
        error = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
        if text.startswith("Unable to deserialize message"):
            record.msg, record.args = "a message that does not fit its LSP type: %s", (
                _one_line(error),)
            expected = True
        elif text.startswith("Unable to handle message"):
            record.msg, record.args = "a message not handled: %s", (_one_line(error),)
            expected = isinstance(error, JsonRpcException) and error.code in _CLIENTS
        elif text.startswith(("Failed to handle request", "Failed to handle notification",
                              "Exception occurred for message")):
            args = record.args if isinstance(record.args, tuple) else ()
            what = args[:2] if text.startswith("Failed to handle request") else args[:1]
            record.msg, record.args = "%s failed: %s", (
                " ".join(str(part) for part in what), _one_line(error))
            expected = isinstance(error, JsonRpcException) and error.code in _CLIENTS
        else:
            return True
        if expected:
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            return logging.getLogger("pygls").isEnabledFor(logging.WARNING)
        return True


#: JSON-RPC errors that are the client's: invalid request or params, a cancelled request.
_CLIENTS = frozenset({-32600, -32602, -32800})


def _one_line(error: BaseException | None) -> str:
    if error is None:
        return "?"
    text = f"{type(error).__name__}: {error}"
    cause = error.__cause__
    if cause is not None:
        text += f" ({type(cause).__name__}: {cause})"
    return " ".join(text.split())[:300]


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.addFilter(ClientErrors())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pygls logs every message body at INFO: documents and completions do not belong in
    # logs. Its warnings (a cancel for a request already answered, a notification we do not
    # handle) are routine with real editors: shown only when asking for more than warnings.
    logging.getLogger("pygls").setLevel(
        logging.WARNING if root.level < logging.WARNING else logging.ERROR)


async def stdin_reader(stdin: BinaryIO, server: MeterlineServer) -> Any:
    """An asyncio reader of stdin. pygls's reads each header line and body in a thread
    (four thread hops a message); a pipe can be read by the event loop itself."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
    except (OSError, ValueError):  # not a pipe (a file, a terminal): read in a thread
        return StdinAsyncReader(stdin, server.thread_pool)
    return reader


async def serve(server: MeterlineServer, stdin: BinaryIO, stdout: BinaryIO) -> None:
    reader = await stdin_reader(stdin, server)
    server.protocol.set_writer(StdoutWriter(stdout))
    try:
        await run_async(stop_event=threading.Event(), reader=reader, protocol=server.protocol,
                        logger=logging.getLogger("pygls.io"),
                        error_handler=server.report_server_error)
    finally:
        # Without a shutdown request (the editor died), this is where queued events are
        # stored; after one, it returns at once.
        await server.stop()


def run(log_level: str = "warning") -> int:
    """Serve LSP on stdin/stdout until ``exit`` or end of input; the exit code."""
    configure_logging(log_level)
    # The store's worker threads (aiosqlite, status reads) take the GIL between the event
    # loop's system calls; with the default 5 ms switch interval the loop can wait that
    # long to get it back after writing a response. Handing it over sooner costs the
    # threads a little throughput and keeps editor round trips short.
    sys.setswitchinterval(0.0005)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    # Anything printed by accident must not corrupt the LSP stream.
    sys.stdout = sys.stderr
    server = create_server()
    code = 0
    try:
        asyncio.run(serve(server, stdin, stdout))
    except SystemExit as exit_:  # pygls ends the process this way on `exit`
        code = exit_.code if isinstance(exit_.code, int) else 0
    except KeyboardInterrupt:
        code = 130
    except Exception:  # the input ended mid-message, or worse: still keep the events
        log.exception("meterline: the language server stopped")
        code = 1
    finally:
        try:
            server.link.spill()
        except OSError as exc:  # nowhere to keep them: say what is lost, loudly
            log.error("meterline: %d event(s) could not be stored or kept: %s",
                      server.link.pending, exc)
            code = code or 1
    return code

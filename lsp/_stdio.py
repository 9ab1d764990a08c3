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

from pygls.io_ import StdinAsyncReader, StdoutWriter, run_async

from lsp._server import MeterlineServer, create_server

log = logging.getLogger("meterline.lsp")


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
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

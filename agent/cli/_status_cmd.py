"""``meterline status``: kept free of click, msgspec and the async stack, for start-up speed."""

from __future__ import annotations

import sqlite3
import sys

from agent import _paths
from agent._errors import MeterlineError
from agent._status import current_status, status_line


def run_status(*, json_output: bool) -> int:
    """Print the status (one line, or the JSON object); return the exit code."""
    db_path = _paths.db_path()
    try:
        report = current_status(db_path, _paths.config_path())
    except MeterlineError as exc:
        print(f"meterline: {exc}", file=sys.stderr)
        return exc.exit_code
    except (sqlite3.Error, OSError) as exc:
        print(f"meterline: cannot read the store at {db_path}: {exc}", file=sys.stderr)
        return 1
    if json_output:
        import json

        print(json.dumps(report.to_json()))
    else:
        print(status_line(report))
    return 0

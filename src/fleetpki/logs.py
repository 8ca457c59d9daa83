"""Structured logs: one JSON object per line, so log shippers need no parsing rules.

Nothing secret is ever passed to a logger: call sites log serials, names and fingerprints,
never key material, passphrases or bootstrap secrets (tests grep the logs to hold that line).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
from pathlib import Path
from typing import Any

_RESERVED = set(vars(logging.makeLogRecord({})))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def close() -> None:
    """Flush and close our handlers (the CLI calls this when a command ends)."""
    root = logging.getLogger("fleetpki")
    for handler in root.handlers:
        handler.close()
    root.handlers.clear()


def configure(log_file: Path | None, *, fmt: str, level: str) -> None:
    handler: logging.Handler
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        # Reopened when logrotate (or an operator) moves the file away: every process of
        # `serve` appends to the same file, which a size-rotating handler per process would
        # tear apart (docs/operations.md has the logrotate rule).
        handler = logging.handlers.WatchedFileHandler(log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("fleetpki")
    close()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False

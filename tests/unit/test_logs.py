"""Structured logs survive logrotate moving the file away under a running process."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from fleetpki import logs


def test_log_file_is_reopened_after_logrotate_moved_it(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "fleetpki.log"
    logs.configure(path, fmt="json", level="info")
    try:
        log = logging.getLogger("fleetpki.test")
        log.info("before rotation", extra={"serial": "01"})
        path.rename(path.with_suffix(".log.1"))  # what logrotate does, without copytruncate
        log.info("after rotation")
    finally:
        logs.close()
    rotated = [json.loads(line) for line in path.with_suffix(".log.1").read_text().splitlines()]
    current = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["msg"], e.get("serial")) for e in rotated] == [("before rotation", "01")]
    assert [e["msg"] for e in current] == ["after rotation"]

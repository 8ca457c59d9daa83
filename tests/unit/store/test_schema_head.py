"""SCHEMA_HEAD must name Alembic's head revision, or stores would never be migrated."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

import fleetpki.store.migrations as migrations


def test_schema_head_matches_alembic_head() -> None:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    assert ScriptDirectory.from_config(config).get_current_head() == migrations.SCHEMA_HEAD

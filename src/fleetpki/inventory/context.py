"""Everything the admin API and the dashboard work with, handed over once at start."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from fleetpki.core.clock import Clock
from fleetpki.core.profile import Profile
from fleetpki.inventory.ports import FleetReader, Operations


@dataclasses.dataclass(frozen=True)
class AdminContext:
    reader: FleetReader
    operations: Operations
    profiles: Mapping[str, Profile]
    clock: Clock
    max_body_bytes: int = 64 * 1024

"""Settings of the admin listener: the `[admin]` table of fleetpki.toml."""

from __future__ import annotations

import dataclasses
import datetime as dt

from fleetpki.config_reader import Section
from fleetpki.server_settings import Address

DEFAULT_ADMIN_LISTEN = "127.0.0.1:8444"


@dataclasses.dataclass(frozen=True, slots=True)
class AdminSettings:
    # HTTPS with the server's certificate; None turns the admin API and dashboard off.
    listen: Address | None
    # How often `fleetpki serve` recomputes the fleet summary the overview shows.
    summary_interval: dt.timedelta
    max_body_bytes: int


def read_admin_settings(admin: Section) -> AdminSettings:
    listen_text: str = admin.string("listen", DEFAULT_ADMIN_LISTEN)
    listen = None
    if listen_text not in ("", "off"):
        try:
            listen = Address.parse(listen_text)
        except ValueError as exc:
            raise admin.error("listen", f"{exc}, or \"off\"") from None
    interval = admin.duration("summary_interval", "10m")
    if not dt.timedelta(seconds=10) <= interval <= dt.timedelta(days=1):
        raise admin.error("summary_interval", "must be between 10s and 1d")
    settings = AdminSettings(
        listen=listen, summary_interval=interval,
        max_body_bytes=admin.integer("max_body_bytes", 64 * 1024, minimum=1024,
                                     maximum=16 * 1024 * 1024))
    admin.finish()
    return settings

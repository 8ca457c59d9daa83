"""The `[revocation]` table of fleetpki.toml: where CRLs and OCSP answers are published, and how
long each stays valid.

CRLs and OCSP travel over plain HTTP (RFC 5280 §8, RFC 6960 Appendix A): they are signed, and a
relying party checking revocation of the very certificate that secures the channel could not
use HTTPS for it. `fleetpki serve` therefore opens a separate plain-HTTP listener for them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from fleetpki.config_reader import Section
from fleetpki.profiles_loader import Publication
from fleetpki.server_settings import Address, ServerSettings

DEFAULT_LISTEN = "127.0.0.1:8080"


@dataclasses.dataclass(frozen=True, slots=True)
class RevocationSettings:
    listen: Address | None  # None: `fleetpki serve` does not serve CRLs and OCSP itself
    base_url: str | None  # the public prefix of /crl/ and /ocsp; None: no derived pointers
    crl_validity: dt.timedelta  # nextUpdate - thisUpdate of full CRLs
    delta_validity: dt.timedelta
    ocsp_validity: dt.timedelta
    short_lived_max: dt.timedelta
    check_interval: dt.timedelta  # how often `fleetpki serve` looks for CRLs to re-sign

    @property
    def publication(self) -> Publication:
        return Publication(base_url=self.base_url, short_lived_max=self.short_lived_max)


def read_revocation_settings(section: Section, server: ServerSettings) -> RevocationSettings:
    listen_text = section.string("listen", DEFAULT_LISTEN)
    listen = None
    if listen_text:
        try:
            listen = Address.parse(listen_text)
        except ValueError as exc:
            raise section.error("listen", f"{exc}, or \"\" to serve no CRLs and OCSP") from None
    base_url = section.string("base_url", None)
    if base_url is None and listen is not None and listen.port != 0:
        # A name the server certificate carries, at the plain-HTTP port. Single-label names
        # ("localhost") are passed over: linters and some clients refuse them in URLs.
        host = next((h for h in server.hostnames if "." in h or ":" in h), server.hostnames[0])
        base_url = f"http://{f'[{host}]' if ':' in host else host}:{listen.port}"
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        raise section.error("base_url", f"{base_url!r} is not an http URL")
    settings = RevocationSettings(
        listen=listen,
        base_url=base_url.rstrip("/") if base_url else None,
        crl_validity=_bounded(section, "crl_validity", "7d", dt.timedelta(hours=1)),
        delta_validity=_bounded(section, "delta_validity", "1d", dt.timedelta(minutes=10)),
        ocsp_validity=_bounded(section, "ocsp_validity", "1d", dt.timedelta(minutes=10)),
        short_lived_max=_bounded(section, "short_lived_max", "7d", dt.timedelta(minutes=5)),
        check_interval=_bounded(section, "check_interval", "30s", dt.timedelta(seconds=1)),
    )
    if settings.delta_validity > settings.crl_validity:
        raise section.error("delta_validity", "must not be longer than crl_validity")
    section.finish()
    return settings


def _bounded(section: Section, key: str, default: str, minimum: dt.timedelta) -> dt.timedelta:
    value = section.duration(key, default)
    if not minimum <= value <= dt.timedelta(days=366):
        raise section.error(key, f"must be between {minimum} and 366d")
    return value

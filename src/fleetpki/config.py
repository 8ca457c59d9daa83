"""Settings: where the store, keys and profiles live, and where the key passphrase comes from.

`fleetpki.toml` in the data directory; strict like profiles (unknown keys refuse to start).
"""

from __future__ import annotations

import dataclasses
import os
import stat
import tomllib
from pathlib import Path

from fleetpki.acme_settings import AcmeSettings, read_acme_settings
from fleetpki.admin_settings import AdminSettings, read_admin_settings
from fleetpki.config_reader import Section
from fleetpki.core.errors import ConfigError, KeyAccessError
from fleetpki.revocation_settings import RevocationSettings, read_revocation_settings
from fleetpki.server_settings import (
    CmpServerSettings,
    EstSettings,
    ScepServerSettings,
    ServerSettings,
    read_cmp_settings,
    read_est_settings,
    read_scep_settings,
    read_server_settings,
)

SETTINGS_FILE = "fleetpki.toml"
DEFAULT_PASSPHRASE_ENV = "FLEETPKI_KEY_PASSPHRASE"


@dataclasses.dataclass(frozen=True, slots=True)
class PassphraseSource:
    """Env var first (for systemd credentials / secret managers), then a 0600 file."""

    env: str
    file: Path | None

    def read(self) -> bytes:
        value = os.environ.get(self.env)
        if value is not None:
            if not value:
                # Set but empty is a mistake (a secret manager that returned nothing), never
                # a request to fall back to the file.
                raise KeyAccessError(f"{self.env} is set but empty: give it the passphrase, "
                                     f"or unset it to use the passphrase file")
            return value.encode("utf-8")
        if self.file is None:
            raise KeyAccessError(f"no key passphrase: set {self.env} or configure "
                                 "keys.passphrase_file")
        try:
            mode = self.file.stat().st_mode
        except FileNotFoundError:
            raise KeyAccessError(f"no key passphrase: set {self.env} or create {self.file} "
                                 "(mode 0600)") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyAccessError(f"{self.file} is readable by other users: chmod 600 it")
        text = self.file.read_text(encoding="utf-8").strip()
        if not text:
            raise KeyAccessError(f"{self.file} is empty")
        return text.encode("utf-8")


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    store_url: str
    key_directory: Path
    passphrase: PassphraseSource
    profiles_file: Path
    log_format: str  # "json" or "text"
    log_level: str
    server: ServerSettings
    est: EstSettings
    scep: ScepServerSettings
    cmp: CmpServerSettings
    acme: AcmeSettings
    revocation: RevocationSettings
    admin: AdminSettings

    @property
    def settings_file(self) -> Path:
        return self.home / SETTINGS_FILE


def load_settings(home: Path) -> Settings:
    """Read <home>/fleetpki.toml; a missing file means the embedded defaults."""
    path = home / SETTINGS_FILE
    data: dict[str, object] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"is not valid TOML: {exc}", file=str(path)) from None
    root = Section(data, file=str(path), profile=None, path="")
    store, keys = root.section("store"), root.section("keys")
    profiles, logging = root.section("profiles"), root.section("logging")
    url = store.string("url", "sqlite:///fleetpki.db")
    passphrase_file = keys.string("passphrase_file", "secrets/key-passphrase")
    server = read_server_settings(root.section("server"))
    settings = Settings(
        home=home,
        store_url=_resolve_sqlite(url, home),
        key_directory=home / keys.string("directory", "keys"),
        passphrase=PassphraseSource(
            env=keys.string("passphrase_env", DEFAULT_PASSPHRASE_ENV),
            file=home / passphrase_file if passphrase_file else None),
        profiles_file=home / profiles.string("file", "profiles.toml"),
        log_format=logging.string("format", "json"),
        log_level=logging.string("level", "info"),
        server=server,
        est=read_est_settings(root.section("est")),
        scep=read_scep_settings(root.section("scep")),
        cmp=read_cmp_settings(root.section("cmp")),
        acme=read_acme_settings(root.section("acme")),
        revocation=read_revocation_settings(root.section("revocation"), server),
        admin=read_admin_settings(root.section("admin")),
    )
    if settings.log_format not in ("json", "text"):
        raise logging.error("format", "must be \"json\" or \"text\"")
    if settings.log_level not in ("debug", "info", "warning", "error"):
        raise logging.error("level", "must be debug, info, warning or error")
    for section in (store, keys, profiles, logging, root):
        section.finish()
    return settings


def _resolve_sqlite(url: str, home: Path) -> str:
    """A relative SQLite path is relative to the data directory, not the working directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith((prefix + "/", prefix + "file:")):
        return prefix + str((home / url[len(prefix):]).resolve())
    return url

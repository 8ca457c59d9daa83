"""The agent's configuration file: strict TOML, read once at start into frozen objects.

    data_dir = "/var/lib/fleetpki-agent"      # relative paths are relative to this file

    [server]
    url = "https://est.example.com:8443"      # required
    label = "sensor"                          # EST label (profile), optional
    connect_timeout = "10s"
    read_timeout = "30s"

    [device]
    common_name = "sensor-0001"               # required
    serial_number = "ACME-0001"               # optional subject serialNumber
    sans = ["dns:sensor-0001.fleet.internal", "uri:urn:dev:mac:0011223344ff", "ip:10.0.0.5"]
    key_type = "ec-p256"                      # ec-p256, ec-p384, ec-p521, ed25519, rsa-2048...

    [policy]                                  # overrides of policy.RenewalPolicy
    renew_at_fraction = 0.67
    spread_fraction = 0.15
    retry_spread = 0.4                        # spread retries over this share of what is left
    use_server_window = true
    jitter = true
    backoff_initial = "5m"                    # each backoff at most 3650d
    backoff_max = "12h"
    grace = true
    factory_fallback = true
    server_keygen = false

    [hook]
    command = ["/usr/local/bin/reload-broker", "--quiet"]   # or one string, split like a shell
    timeout = "30s"

    [trust]
    pinned_roots = ["sha256:ab12…"]           # future roots the device may accept

Why strict (DESIGN.md §2): a misspelt key silently ignored on ten thousand devices is a fleet
that renews on the wrong schedule. Unknown keys and bad values refuse to start, with a message
naming the file and the key. The agent cannot import the server's config reader (it must
install alone), so this one is small and its own.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import ipaddress
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from fleetpki.agent import durable, trust
from fleetpki.agent.flow import Enrollee
from fleetpki.agent.policy import RenewalPolicy
from fleetpki.agent.transport import parse_server_url
from fleetpki.core.durations import format_duration, parse_duration
from fleetpki.core.keys import KeySpec

DEFAULT_PATH = Path("/etc/fleetpki-agent/agent.toml")
# The server's rule for labels (protocols/est/handler.py), repeated: the agent cannot import it.
_LABEL = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_PRINTABLE = re.compile(r"^[A-Za-z0-9 '()+,./:=?-]{1,64}$")  # X.520 PrintableString
# Backoff beyond ten years means "never retry" in practice; above it the schedule's date
# arithmetic could overflow (schedule.retry_at), so it is refused here, not on a device later.
MAX_BACKOFF = dt.timedelta(days=3650)


class AgentConfigError(Exception):
    """The configuration cannot be used; the message names the file and the key."""


@dataclasses.dataclass(frozen=True, slots=True)
class Hook:
    command: tuple[str, ...]
    timeout: dt.timedelta


@dataclasses.dataclass(frozen=True, slots=True)
class AgentConfig:
    source: Path
    data_dir: Path
    server_url: str
    connect_timeout: dt.timedelta
    read_timeout: dt.timedelta
    enrollee: Enrollee
    policy: RenewalPolicy
    hook: Hook | None = None
    pinned_roots: frozenset[str] = frozenset()


def load_config(path: Path) -> AgentConfig:
    try:
        # Not path.read_text(): a FIFO there would block the agent forever (durable.py).
        document = tomllib.loads(durable.read_regular(path).decode("utf-8-sig"))
    except FileNotFoundError:
        raise AgentConfigError(f"{path}: no such file; write one (docs/agent.md) or pass "
                               "--config") from None
    except durable.NotRegularFile as error:
        raise AgentConfigError(f"{path}: is {error.strerror}; point --config (or "
                               "FLEETPKI_AGENT_CONFIG) at the configuration file itself"
                               ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise AgentConfigError(f"{path}: cannot read it: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise AgentConfigError(f"{path}: not valid TOML: {error}") from None
    top = _Table(path, None, document)
    data_dir = Path(top.string("data_dir", required=True))
    if not data_dir.is_absolute():
        data_dir = path.resolve().parent / data_dir
    server, device = top.required_table("server"), top.required_table("device")
    policy_table = top.table("policy") or _Table(path, "policy", {})
    hook_table, trust_table = top.table("hook"), top.table("trust")
    top.finish()

    url = server.string("url", required=True)
    try:
        parse_server_url(url)
    except ValueError as error:
        raise server.error("url", str(error)) from None
    label = server.string("label")
    if label is not None and not _LABEL.match(label):
        raise server.error("label", "must be lower-case letters, digits, '-' and '_', "
                                    "starting with a letter")
    connect_timeout = server.duration("connect_timeout", dt.timedelta(seconds=10),
                                      maximum=dt.timedelta(minutes=5))
    read_timeout = server.duration("read_timeout", dt.timedelta(seconds=30),
                                   maximum=dt.timedelta(minutes=10))
    server.finish()

    enrollee, key_spec = _device(device, label)
    return AgentConfig(
        source=path, data_dir=data_dir, server_url=url, connect_timeout=connect_timeout,
        read_timeout=read_timeout, enrollee=enrollee, policy=_policy(policy_table, key_spec),
        hook=_hook(hook_table) if hook_table else None,
        pinned_roots=_pins(trust_table) if trust_table else frozenset())


def _device(device: _Table, label: str | None) -> tuple[Enrollee, KeySpec]:
    common_name = device.string("common_name", required=True)
    if not 1 <= len(common_name) <= 64:
        raise device.error("common_name", "must be 1 to 64 characters (RFC 5280 ub-common-name)")
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    serial_number = device.string("serial_number")
    if serial_number is not None:
        if not _PRINTABLE.match(serial_number):
            raise device.error("serial_number", "must be 1 to 64 printable characters "
                                                "(letters, digits, space and '()+,-./:=?)")
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number))
    sans = tuple(_san(device, text) for text in device.strings("sans"))
    try:
        key_spec = KeySpec.parse(device.string("key_type", "ec-p256"))
    except ValueError as error:
        raise device.error("key_type", str(error)) from None
    device.finish()
    return Enrollee(x509.Name(attributes), sans, label), key_spec


def _san(device: _Table, text: str) -> x509.GeneralName:
    kind, colon, value = text.partition(":")
    kind = kind.strip().lower()
    try:
        if not colon or not value:
            raise ValueError("missing value")
        if kind == "dns":
            return x509.DNSName(value)
        if kind == "ip":
            return x509.IPAddress(ipaddress.ip_address(value))
        if kind == "uri":
            return x509.UniformResourceIdentifier(value)
        if kind == "email":
            return x509.RFC822Name(value)
    except ValueError:
        pass
    raise device.error("sans", f"'{text[:80]}' must be dns:NAME, ip:ADDRESS, uri:URI or "
                               "email:ADDRESS")


def _policy(table: _Table, key_spec: KeySpec) -> RenewalPolicy:
    defaults = RenewalPolicy()
    values: dict[str, Any] = {"key_spec": key_spec}
    for name in ("renew_at_fraction", "spread_fraction", "retry_spread"):
        values[name] = table.number(name, getattr(defaults, name))
    for name in ("use_server_window", "jitter", "grace", "factory_fallback", "server_keygen"):
        values[name] = table.boolean(name, getattr(defaults, name))
    for name in ("backoff_initial", "backoff_max"):
        values[name] = table.duration(name, getattr(defaults, name), maximum=MAX_BACKOFF)
    table.finish()
    try:
        return RenewalPolicy(**values)
    except ValueError as error:
        raise table.error(None, str(error)) from None


def _hook(table: _Table) -> Hook:
    raw = table.get("command", required=True)
    if isinstance(raw, str):
        try:
            command = tuple(shlex.split(raw))
        except ValueError as error:
            raise table.error("command", f"cannot be split into words: {error}") from None
    elif isinstance(raw, list) and all(isinstance(word, str) for word in raw):
        command = tuple(raw)
    else:
        raise table.error("command", "must be a string or a list of strings")
    if not command or not command[0]:
        raise table.error("command", "must name a program")
    if any("\0" in word for word in command):
        raise table.error("command", "must not contain a NUL character")
    timeout = table.duration("timeout", dt.timedelta(seconds=30), maximum=dt.timedelta(hours=1))
    table.finish()
    return Hook(command, timeout)


def _pins(table: _Table) -> frozenset[str]:
    pins = set()
    for text in table.strings("pinned_roots"):
        try:
            pins.add(trust.normalise_pin(text))
        except ValueError as error:
            raise table.error("pinned_roots", str(error)) from None
    table.finish()
    return frozenset(pins)


class _Table:
    """One TOML table: typed getters that remember what was read, so finish() can refuse
    whatever was not."""

    def __init__(self, file: Path, name: str | None, data: dict[str, Any]) -> None:
        self.file, self.name, self.data = file, name, data
        self.used: set[str] = set()

    def error(self, key: str | None, message: str) -> AgentConfigError:
        where = ".".join(part for part in (self.name, key) if part)
        return AgentConfigError(f"{self.file}: {where}: {message}" if where
                                else f"{self.file}: {message}")

    def get(self, key: str, default: Any = None, *, required: bool = False) -> Any:
        self.used.add(key)
        if key not in self.data:
            if required:
                typo = difflib.get_close_matches(key, list(self.data), n=1)
                if typo:
                    raise self.error(typo[0], f"unknown key; did you mean '{key}'?")
                raise self.error(key, "is required")
            return default
        return self.data[key]

    def string(self, key: str, default: Any = None, *, required: bool = False) -> Any:
        value = self.get(key, default, required=required)
        if value is not None and not isinstance(value, str):
            raise self.error(key, f"must be a string, not {_kind(value)}")
        if required and not value:
            raise self.error(key, "must not be empty")
        if value is not None and "\0" in value:
            # No path, name or program may hold one: the OS would refuse it much later.
            raise self.error(key, "must not contain a NUL character")
        return value

    def strings(self, key: str) -> list[str]:
        value = self.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.error(key, f"must be a list of strings, not {_kind(value)}")
        if any("\0" in item for item in value):
            raise self.error(key, "must not contain a NUL character")
        return value

    def number(self, key: str, default: float) -> float:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, not {_kind(value)}")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, not {_kind(value)}")
        return value

    def duration(self, key: str, default: dt.timedelta, *,
                 maximum: dt.timedelta) -> dt.timedelta:
        """Every duration has a maximum: a huge value would overflow date arithmetic
        later, as a traceback on the device instead of this one-line error."""
        text = self.get(key)
        if text is None:
            return default
        if not isinstance(text, str):
            raise self.error(key, f"must be a duration string such as \"30s\" or \"5m\", not "
                                  f"{_kind(text)}")
        try:
            value = parse_duration(text)
        except ValueError as error:
            raise self.error(key, str(error)) from None
        except OverflowError:
            raise self.error(key, f"must be at most {format_duration(maximum)}") from None
        if value <= dt.timedelta(0):
            raise self.error(key, "must be positive")
        if value > maximum:
            raise self.error(key, f"must be at most {format_duration(maximum)}")
        return value

    def required_table(self, key: str) -> _Table:
        table = self.table(key)
        if table is None:
            raise self.error(key, f"is required: add a [{key}] table")
        return table

    def table(self, key: str) -> _Table | None:
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table ([{key}]), not {_kind(value)}")
        name = f"{self.name}.{key}" if self.name else key
        return _Table(self.file, name, value)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.error(unknown[0], "unknown key (docs/agent.md lists the keys)")


def _kind(value: object) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)

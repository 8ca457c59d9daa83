"""A strict reader over parsed TOML: every key must be consumed, every value has its type.

Errors name the file, the profile and the dotted field, so an operator can go straight to the
line. Unknown keys are errors, not warnings: a misspelt `maximun` silently ignored would give
devices the default validity instead of the one the operator wrote.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from typing import Any, TypeVar

from fleetpki.core.durations import parse_duration
from fleetpki.core.errors import ConfigError

T = TypeVar("T")
_REQUIRED: Any = object()


class Section:
    def __init__(self, data: dict[str, Any], *, file: str, profile: str | None, path: str
                 ) -> None:
        self._data = data
        self._used: set[str] = set()
        self.file, self.profile, self.path = file, profile, path

    def error(self, key: str | None, message: str) -> ConfigError:
        field = ".".join(p for p in (self.path, key) if p) or None
        return ConfigError(message, file=self.file, profile=self.profile, field=field)

    def names(self) -> list[str]:
        return list(self._data)

    def has(self, key: str) -> bool:
        return key in self._data

    def _get(self, key: str, kind: type[T] | tuple[type, ...], default: Any, kind_name: str
             ) -> Any:
        self._used.add(key)
        if key not in self._data:
            if default is _REQUIRED:
                typo = difflib.get_close_matches(key, list(self._data), n=1)
                if typo:
                    raise self.error(typo[0], f"unknown key; did you mean '{key}'?")
                raise self.error(key, "is required")
            return default
        value = self._data[key]
        if isinstance(value, bool) and kind is not bool:
            raise self.error(key, f"must be {kind_name}, not a boolean")
        if not isinstance(value, kind):
            raise self.error(key, f"must be {kind_name}, not {type(value).__name__} {value!r}")
        return value

    def string(self, key: str, default: Any = None) -> Any:
        return self._get(key, str, default, "a string")

    def required_string(self, key: str) -> str:
        value: str = self._get(key, str, _REQUIRED, "a string")
        return value

    def integer(self, key: str, default: int, *, minimum: int, maximum: int) -> int:
        value: int = self._get(key, int, default, "an integer")
        if not minimum <= value <= maximum:
            raise self.error(key, f"must be between {minimum} and {maximum}, not {value}")
        return value

    def number(self, key: str, default: float, *, minimum: float, maximum: float) -> float:
        value = float(self._get(key, (int, float), default, "a number"))
        if not minimum <= value <= maximum:
            raise self.error(key, f"must be between {minimum} and {maximum}, not {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value: bool = self._get(key, bool, default, "true or false")
        return value

    def strings(self, key: str, default: list[str] | None = None) -> list[str]:
        value = self._get(key, list, default if default is not None else [], "a list of strings")
        for item in value:
            if not isinstance(item, str):
                raise self.error(key, f"must be a list of strings; {item!r} is not a string")
        return list(value)

    def duration(self, key: str, default: str | None = None) -> dt.timedelta:
        """A duration such as "365d"; required when no default is given."""
        text = self._get(key, str, _REQUIRED if default is None else default,
                         "a duration string like \"365d\"")
        try:
            return parse_duration(text)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def pattern(self, key: str) -> re.Pattern[str] | None:
        text = self.string(key)
        if text is None:
            return None
        try:
            return re.compile(text)
        except re.error as exc:
            raise self.error(key, f"is not a valid regular expression: {exc}") from None

    def section(self, key: str, *, required: bool = False) -> Section:
        value = self._get(key, dict, _REQUIRED if required else {}, "a table")
        return Section(value, file=self.file, profile=self.profile,
                       path=".".join(p for p in (self.path, key) if p))

    def table(self, key: str) -> dict[str, Any]:
        value: dict[str, Any] = self._get(key, dict, {}, "a table")
        return value

    def tables(self, key: str) -> list[Section]:
        value = self._get(key, list, [], "a list of tables")
        sections = []
        for index, item in enumerate(value):
            path = f"{'.'.join(p for p in (self.path, key) if p)}[{index}]"
            if not isinstance(item, dict):
                raise ConfigError("must be a table", file=self.file, profile=self.profile,
                                  field=path)
            sections.append(Section(item, file=self.file, profile=self.profile, path=path))
        return sections

    def finish(self) -> None:
        """Refuse keys nobody read: they are typos or options this version does not have."""
        unknown = sorted(set(self._data) - self._used)
        if unknown:
            guess = difflib.get_close_matches(unknown[0], sorted(self._used), n=1)
            hint = f"did you mean '{guess[0]}'?" if guess else "see docs/profiles.md"
            raise self.error(unknown[0], f"unknown key; {hint}")


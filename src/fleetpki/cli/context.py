"""Shared CLI plumbing: the data directory option, opening the fleet, rendering errors."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from fleetpki import logs
from fleetpki.core.durations import parse_duration
from fleetpki.core.errors import BadInput, FleetPKIError
from fleetpki.wiring import Fleet, open_fleet

F = TypeVar("F", bound=Callable[..., Any])
INTERNAL_ERROR_EXIT = 70
FILE_ERROR_EXIT = 11  # docs/operations.md, exit codes: the message names the file


@dataclasses.dataclass
class CliState:
    home: Path
    _fleet: Fleet | None = None

    def fleet(self) -> Fleet:
        if self._fleet is None:
            self._fleet = open_fleet(self.home)
            settings = self._fleet.settings
            logs.configure(self.home / "logs" / "fleetpki.log", fmt=settings.log_format,
                           level=settings.log_level)
        return self._fleet

    def close(self) -> None:
        if self._fleet is not None:
            self._fleet.close()
            self._fleet = None
        logs.close()


pass_state = click.make_pass_decorator(CliState)


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handle_errors(func: F) -> F:
    """Domain errors become one line on stderr and a distinct exit code; a bug becomes one line
    too, with the traceback only when FLEETPKI_DEBUG is set."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FleetPKIError as exc:
            fail(str(exc), exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, KeyboardInterrupt, SystemExit):
            raise
        except BrokenPipeError:
            # The reader (e.g. `| head`) went away: not an error of ours, and nothing to say.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            fail(f"{exc.strerror or exc}{where}", FILE_ERROR_EXIT)
        except Exception as exc:
            if os.environ.get("FLEETPKI_DEBUG"):
                raise
            fail(f"internal error ({type(exc).__name__}: {exc}); this is a bug in fleetpki. "
                 "Rerun with FLEETPKI_DEBUG=1 to see the traceback and report it.",
                 INTERNAL_ERROR_EXIT)

    return wrapper  # type: ignore[return-value]


def read_input_file(path: Path, *, what: str, limit: int | None = None,
                    allow_empty: bool = True) -> bytes:
    """`allow_empty=False` for a file that must hold something (a certificate, a key): an
    empty one is said to be empty, with its name, rather than failing to parse as something
    vaguer further on."""
    try:
        size = path.stat().st_size
        if limit is not None and size > limit:
            raise click.UsageError(f"{what} {path} is {size} bytes; the limit is {limit}")
        data = path.read_bytes()
        if not allow_empty and not data.strip():
            raise BadInput(f"{what} {path} is empty ({len(data)} bytes)")
        return data
    except FileNotFoundError:
        raise click.UsageError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise click.UsageError(f"{what} {path} is a directory") from None
    except PermissionError:
        raise click.UsageError(f"cannot read {what} {path}: permission denied") from None


def read_text_file(path: Path, *, what: str, limit: int | None = None) -> str:
    """A UTF-8 text input (a list of ids, of targets). A byte-order mark, which Windows
    editors and spreadsheets write, is dropped rather than becoming part of the first line."""
    data = read_input_file(path, what=what, limit=limit)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise click.UsageError(f"{what} {path} is not UTF-8 text (byte {exc.start} is "
                               f"0x{data[exc.start]:02x}); save it as UTF-8") from None


WHEN = "an ISO-8601 time (UTC unless it has an offset) or a duration from now (7d, 12h)"


def parse_when(text: str, now: dt.datetime, option: str) -> dt.datetime:
    """A duration counts from now; a time without an offset is UTC, as in every other place
    fleetpki prints times."""
    try:
        return now + parse_duration(text)
    except ValueError:
        pass
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(f"'{text}' is not {WHEN}", param_hint=option) from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)

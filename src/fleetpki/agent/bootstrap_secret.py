"""The one-time enrollment secret a device may be provisioned with: `bootstrap.secret` in the
data directory, one line `<id>:<secret>` as `fleetpki bootstrap create` prints it, mode 0600.

The agent only reads it (RFC 7030 §3.2.3: HTTP Basic for a first enrollment) and never
rewrites or deletes it. A file that is there but unusable is not used, with a note naming it:
it matters only when the device must enroll again, and the session then fails for want of a
secret, so the log and `status` must say which file to fix. No note quotes the file.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from fleetpki.agent import durable
from fleetpki.core.enrollment_records import CREDENTIAL_ID


def read(path: Path, notes: list[str]) -> tuple[str, str] | None:
    """(id, secret), or None if there is no usable secret; each problem appends a note."""
    try:
        text = durable.read_regular(path).decode("utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as error:
        notes.append(f"cannot read {path}: {error.strerror or error}; the bootstrap secret is "
                     "not used: fix its permissions (0600, owned by the agent's user) or "
                     "provision it again")
        return None
    except UnicodeDecodeError:
        text = ""
    identifier, _, secret = text.partition(":")
    # The server's rule: a missing id or a pasted CSV line is named here, not refused as a 401.
    if not (CREDENTIAL_ID.match(identifier) and secret and secret.isprintable()):
        notes.append(f"{path} is not one line '<id>:<secret>' as `fleetpki bootstrap create` "
                     "prints them; the bootstrap secret is not used: provision it again")
        return None
    with contextlib.suppress(OSError):
        if path.stat().st_mode & 0o077:
            notes.append(f"{path} is readable by other users; chmod 600 it")
    return identifier, secret

"""Authorizers decide *who* may enroll and return constraints; profiles decide *what*.

The operator authorizer covers the local CLI. Protocol-specific ones (bootstrap secret, IDevID,
current certificate, ACME account) arrive with their front ends.
"""

from __future__ import annotations

import getpass
import os

from fleetpki.ra.api import Authorization


def local_operator() -> Authorization:
    """Whoever runs the CLI on the CA host is the operator; the audit log records the account."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid-{os.getuid()}"
    return Authorization(actor=f"operator:{user}")

"""What the RA tells an onlooker about its decisions, for counting: monitoring (the metrics
package) implements it, the composition root passes it in, and the RA never learns who listens.

Only low-cardinality values cross this line: profile names (from profiles.toml, never a label
a client made up), the protocol, and the kind of refusal (the domain error's class name). Never a
device id, serial or address: a metric per device would grow without bound.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["NO_OBSERVER", "UNKNOWN_PROFILE", "EnrollmentObserver", "NoObserver"]

# The profile of a request refused before it named or authenticated into one (the audit log's
# "-" as well).
UNKNOWN_PROFILE = "-"


class EnrollmentObserver(Protocol):
    def issued(self, profile: str, protocol: str) -> None:
        """A certificate was issued and is about to be returned."""
        ...

    def held(self, profile: str, protocol: str) -> None:
        """A new enrollment waits for an operator (manual approval)."""
        ...

    def refused(self, profile: str, protocol: str, reason: str) -> None:
        """A request was refused; `reason` is the domain error's class name (NotAuthorized,
        NotAuthenticated, PolicyViolation, BadInput, RateLimited, NotFound, ...)."""
        ...


class NoObserver:
    """Nobody is counting (tests, the simulator's defaults)."""

    def issued(self, profile: str, protocol: str) -> None:
        pass

    def held(self, profile: str, protocol: str) -> None:
        pass

    def refused(self, profile: str, protocol: str, reason: str) -> None:
        pass


NO_OBSERVER: EnrollmentObserver = NoObserver()

"""keyfiles.failures_naming: which failures are reported against the file the caller asked for."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from fleetpki.ca.keyfiles import failures_naming


def _raised(error: OSError, target: Path, temporary: Path | None) -> OSError:
    with pytest.raises(OSError) as caught, failures_naming(target, temporary=temporary):
        raise error
    return caught.value


@pytest.mark.parametrize("named", [None, "/media/.b.tar.gz.partial", "/media/.stage/keys/k.pem",
                                   "/media/.stage"])
def test_a_failure_without_a_name_or_in_a_temporary_place_names_the_target(
        named: str | None) -> None:
    temporary = Path("/media/.stage") if ".stage" in str(named) else \
        Path("/media/.b.tar.gz.partial")
    error = OSError(errno.ENOSPC, "No space left on device", named)
    raised = _raised(error, Path("/media/b.tar.gz"), temporary)
    assert (raised.errno, raised.strerror, raised.filename) == \
        (errno.ENOSPC, "No space left on device", "/media/b.tar.gz")


@pytest.mark.parametrize("named", ["/etc/fleetpki/key.pem", "/media/.stage-other/x",
                                   "/media/.stagekeys"])
def test_a_failure_naming_another_file_keeps_its_name(named: str) -> None:
    error = PermissionError(errno.EACCES, "Permission denied", named)
    raised = _raised(error, Path("/media/b.tar.gz"), Path("/media/.stage"))
    assert raised is error

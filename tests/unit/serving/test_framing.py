from __future__ import annotations

import pytest

from fleetpki.serving.framing import framing_problem

HOST = (b"host", b"example")


@pytest.mark.parametrize(("version", "headers", "status"), [
    ("1.1", [HOST], None),
    ("1.0", [], None),
    ("1.1", [], 400),
    ("1.1", [HOST, HOST], 400),
    ("1.1", [HOST, (b"content-type", b"a"), (b"content-type", b"b")], 400),
    ("1.1", [HOST, (b"content-length", b"4"), (b"content-length", b"4")], 400),
    ("1.1", [HOST, (b"transfer-encoding", b"chunked")], None),
    ("1.1", [HOST, (b"transfer-encoding", b" Chunked ")], None),
    ("1.1", [HOST, (b"transfer-encoding", b"gzip, chunked")], 501),
    ("1.1", [HOST, (b"transfer-encoding", b"gzip"), (b"transfer-encoding", b"chunked")], 501),
    ("1.1", [HOST, (b"transfer-encoding", b"chunked, chunked")], 501),
    ("1.0", [(b"transfer-encoding", b"chunked")], 400),
    # a list-valued field may repeat
    ("1.1", [HOST, (b"accept", b"a"), (b"accept", b"b")], None),
])
def test_framing_problem(version: str, headers: list[tuple[bytes, bytes]],
                         status: int | None) -> None:
    problem = framing_problem(version, headers)
    assert (problem[0] if problem else None) == status
    if problem is not None:
        assert problem[1]  # a reason a person can read


def test_reason_names_the_repeated_field() -> None:
    problem = framing_problem("1.1", [HOST, (b"authorization", b"a"), (b"authorization", b"b")])
    assert problem == (400, "the request has 2 authorization headers; send one")

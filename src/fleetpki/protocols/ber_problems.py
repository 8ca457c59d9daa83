"""What went wrong decoding a BER/DER message, in words a client's developer can act on.

pyasn1's own messages are empty for a truncated message and print its schema objects for a
wrong one ("<TagSet object, tags 0:0:2> not in asn1Spec: <Sequence schema object, ...>").
"""

from __future__ import annotations

from pyasn1.error import (  # type: ignore[import-untyped, unused-ignore]
    EndOfStreamError,
    PyAsn1Error,
)


def ber_problem(data: bytes, error: Exception, what: str) -> str:
    if not data:
        return f"the body is empty; expected a DER-encoded {what}"
    if isinstance(error, EndOfStreamError):
        return f"the data ends before the {what} does (truncated, or not DER at all)"
    if isinstance(error, PyAsn1Error) and "not in asn1Spec" in str(error):
        return f"this is not a {what}: its ASN.1 structure is of another kind"
    return f"not a DER-encoded {what}"

"""EST wire encoding (RFC 7030 §4, as updated by RFC 8951 §3): bodies, media types, certs-only.

Pure functions over bytes, shared by the server and the device agent so that both ends speak
through the same code. Nothing here knows about HTTP frameworks; the server maps `BadInput`
to a 400 and compares `media_type()` results for 415.

Why base64 at all: RFC 7030 labelled its bodies with a MIME Content-Transfer-Encoding header,
which HTTP does not use; RFC 8951 §3 settled that every EST body is base64 (RFC 4648 §4) of
the DER, whatever that header says, and that receivers must cope with line breaks (§3.1).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from fleetpki.core.errors import BadInput

__all__ = [
    "CT_CERTS_ONLY", "CT_CSRATTRS", "CT_PKCS7", "CT_PKCS8", "CT_PKCS10",
    "CT_SERVER_GENERATED_KEY", "MAX_BODY_BYTES",
    "certs_only", "decode_base64_body", "decode_serverkeygen", "encode_base64_body",
    "encode_serverkeygen", "load_certs_only", "media_type",
]

# A CSR is a few kilobytes even with RSA-4096 and many SANs; anything far larger is not an
# enrollment request. The server answers 413 above this, before decoding anything.
MAX_BODY_BYTES = 64 * 1024

# Media types of RFC 7030 §3.2.4 (table of operations and their message types).
CT_PKCS10 = "application/pkcs10"  # §4.2.1: simpleenroll / simplereenroll / serverkeygen requests
CT_CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only"  # §4.2.3 enrollment responses
CT_PKCS7 = "application/pkcs7-mime"  # §4.1.3: /cacerts carries no smime-type parameter
CT_CSRATTRS = "application/csrattrs"  # §4.5.2
CT_PKCS8 = "application/pkcs8"  # §4.4.2: the server-generated private key part
# §4.4.2: the same, encrypted for the device (key_encryption.py)
CT_SERVER_GENERATED_KEY = "application/pkcs7-mime; smime-type=server-generated-key"
_MULTIPART_MIXED = "multipart/mixed"  # §4.4.2: the server-side key generation response

_BASE64_TEXT = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_BASE64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_NOT_BASE64 = "the body is not base64 (RFC 7030 §4: EST bodies are base64-encoded DER)"
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]{1,64})-----(.*?)-----END ([A-Z0-9 ]{1,64})-----",
                        re.DOTALL)
# RFC 7468 §7 names the label "CERTIFICATE REQUEST"; older tools still write the "NEW" form.
_PEM_CSR_LABELS = frozenset({b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST"})
# A subset of RFC 2046 §5.1.1 bchars that needs no quoting in the Content-Type parameter.
_BOUNDARY = re.compile(r"[A-Za-z0-9._-]{1,70}")
_MIME_LINE = 76  # RFC 2045 §6.8: base64 lines in a MIME part are at most 76 characters


def decode_base64_body(body: bytes) -> bytes:
    """The DER inside an EST body, or BadInput saying what is wrong and where.

    Accepted (RFC 8951 §3.1: receivers tolerate line breaks, senders need not add any): one
    line or many, CRLF or LF anywhere, surrounding white space. Otherwise the RFC 4648 §4
    alphabet is enforced strictly, with '=' only as final padding. As a courtesy to clients
    that send a PEM file as it is, a PEM certificate request is unwrapped to its DER.
    """
    start, end = _trimmed(body, 0, len(body))
    if start == end:
        raise BadInput("the body is empty; EST expects base64-encoded DER (RFC 7030 §4)")
    if body.startswith(b"-----BEGIN", start):
        start, end = _pem_payload(body, start, end)
    text = body[start:end].translate(None, b"\r\n")
    if len(text) % 4 == 0 and _BASE64_TEXT.fullmatch(text):
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error as exc:  # not expected after the checks above; kept as a guard
            raise BadInput(f"{_NOT_BASE64}: {exc}") from None
    raise BadInput(f"{_NOT_BASE64}: {_base64_defect(body, start, end, len(text))}")


def encode_base64_body(der: bytes) -> bytes:
    """Base64 of `der` on one line, without a trailing newline (RFC 8951 §3: RFC 4648 §4).

    One line because strongSwan's `pki --est` decodes only single-line base64, and RFC 8951
    §3.1 does not ask senders for line breaks.
    """
    return base64.b64encode(der)


def media_type(content_type_header: str | None) -> str:
    """'type/subtype' of a Content-Type header, lower-cased, without parameters ('' if none).

    Media types are case-insensitive (RFC 9110 §8.3.1), so comparisons for 415 must be too.
    """
    if not content_type_header:
        return ""
    return content_type_header.split(";", 1)[0].strip().lower()


def certs_only(certs: Sequence[x509.Certificate]) -> bytes:
    """DER of a certs-only CMS SignedData (RFC 7030 §4.1.3 and §4.2.3: no signers, no content).

    Raises ValueError for an empty list: every certs-only EST response carries a certificate.
    """
    if not certs:
        raise ValueError("a certs-only message needs at least one certificate")
    return pkcs7.serialize_certificates(list(certs), serialization.Encoding.DER)


def load_certs_only(der: bytes) -> list[x509.Certificate]:
    """The certificates of a certs-only SignedData, or BadInput (not CMS, or none inside).

    cryptography retries input that is not DER as BER and says so with a UserWarning. Where
    warnings are errors (the test suite, `-W error`), that warning arrives here as an
    exception and is reported as BadInput; elsewhere the BER reading is accepted, leniently.
    Filtering warnings locally instead would not be thread-safe (catch_warnings is global).
    """
    certs = _certificates_of_signed_data(der)
    if certs is not None:
        return certs
    try:
        certs = pkcs7.load_der_pkcs7_certificates(der)
    except (ValueError, UnsupportedAlgorithm, x509.InvalidVersion, UserWarning) as exc:
        raise BadInput(f"not a PKCS#7 certs-only message (RFC 7030 §4.1.3): {exc}") from None
    if not certs:
        raise BadInput("the PKCS#7 certs-only message contains no certificate")
    return certs


# id-signedData (RFC 5652 §5.1), as its DER OBJECT IDENTIFIER.
_SIGNED_DATA_OID = bytes.fromhex("06092a864886f70d010702")
# EncapsulatedContentInfo of a certs-only message: id-data and no content (RFC 5652 §5.2).
_NO_CONTENT = bytes.fromhex("300b06092a864886f70d010701")


def _certificates_of_signed_data(der: bytes) -> list[x509.Certificate] | None:
    """The certificates of a plain DER certs-only SignedData, read by walking its structure
    (RFC 5652 §5.1: ContentInfo, [0] SignedData, version, digestAlgorithms,
    encapContentInfo, [0] IMPLICIT certificates); None for anything else, which the general
    loader then reads or refuses. A device parses one of these at every renewal, and the
    general loader costs ten times the walk."""
    try:
        content_info = _element(der, 0, 0x30)
        oid = _element(der, content_info[0], 0x06)
        if der[content_info[0]:oid[1]] != _SIGNED_DATA_OID:
            return None
        explicit = _element(der, oid[1], 0xA0)
        signed_data = _element(der, explicit[0], 0x30)
        position = signed_data[0]
        for tag in (0x02, 0x31):  # version, digestAlgorithms
            position = _element(der, position, tag)[1]
        encapsulated = _element(der, position, 0x30)[1]
        if der[position:encapsulated] != _NO_CONTENT:  # certs-only: id-data, no content
            return None
        position = encapsulated
        start, end = _element(der, position, 0xA0)
        certificates = []
        while start < end:
            _, after = _element(der, start, 0x30)
            certificates.append(x509.load_der_x509_certificate(der[start:after]))
            start = after
        return certificates or None
    except (IndexError, ValueError, x509.InvalidVersion):
        return None


def _element(der: bytes, position: int, tag: int) -> tuple[int, int]:
    """(content start, element end) of the DER element at `position`, which must carry
    `tag` and a definite length; ValueError otherwise."""
    if der[position] != tag:
        raise ValueError("unexpected tag")
    first = der[position + 1]
    if first < 0x80:
        start, size = position + 2, first
    else:
        count = first & 0x7F
        if not 1 <= count <= 4:
            raise ValueError("indefinite or oversized length")
        start = position + 2 + count
        size = int.from_bytes(der[position + 2:start], "big")
    if start + size > len(der):
        raise ValueError("truncated")
    return start, start + size


def encode_serverkeygen(
    private_key_der: bytes, certs: Sequence[x509.Certificate], boundary: str, *,
    encrypted: bool = False,
) -> tuple[str, bytes]:
    """(Content-Type, body) of a server-side key generation response (RFC 7030 §4.4.2).

    Two parts, key first: application/pkcs8 with the PKCS#8 DER (or, `encrypted`,
    application/pkcs7-mime; smime-type=server-generated-key with a CMS ContentInfo), then the
    certs-only message. Each part keeps the Content-Transfer-Encoding header for clients
    written to RFC 7030 alone (RFC 8951 §3 tells newer ones to ignore it) and wraps base64 at
    76 columns with CRLF, as RFC 2045 §6.8 wants of a MIME part. The boundary cannot collide
    with the content: a delimiter line starts with "--", which base64 never contains.
    `boundary` comes from the caller (randomness is injected); ValueError if it is not 1-70 of
    [A-Za-z0-9._-].
    """
    if not _BOUNDARY.fullmatch(boundary):
        raise ValueError(f"MIME boundary {boundary!r} must be 1 to 70 of A-Z a-z 0-9 . _ -")
    if not private_key_der:
        raise ValueError("the private key is empty")
    key_type = CT_SERVER_GENERATED_KEY if encrypted else CT_PKCS8
    lines: list[str] = []
    for part_type, der in ((key_type, private_key_der), (CT_CERTS_ONLY, certs_only(certs))):
        text = encode_base64_body(der).decode("ascii")
        lines += [f"--{boundary}", f"Content-Type: {part_type}",
                  "Content-Transfer-Encoding: base64", ""]
        lines += [text[i:i + _MIME_LINE] for i in range(0, len(text), _MIME_LINE)]
    lines.append(f"--{boundary}--")
    body = ("\r\n".join(lines) + "\r\n").encode("ascii")
    return f"{_MULTIPART_MIXED}; boundary={boundary}", body


def decode_serverkeygen(content_type: str, body: bytes) -> tuple[bytes, list[x509.Certificate]]:
    """(PKCS#8 DER, certificates) of a server-side key generation response (RFC 7030 §4.4.2).

    Tolerant of LF-only lines, a preamble and epilogue, transport padding after delimiters,
    the parts in either order, unknown extra parts, and any Content-Transfer-Encoding (RFC
    8951 §3: the content is base64 whatever the header says). BadInput for anything it cannot
    use: another media type, no boundary, a missing closing delimiter, a missing or repeated
    part, a key that is not an unencrypted PKCS#8 private key, or an encrypted key part
    (smime-type=server-generated-key), which fleetpki does not request.
    """
    if media_type(content_type) != _MULTIPART_MIXED:
        raise BadInput(f"the serverkeygen response is {media_type(content_type) or 'untyped'}, "
                       f"not {_MULTIPART_MIXED} (RFC 7030 §4.4.2)")
    boundary = _parameter(content_type, "boundary")
    if not boundary:
        raise BadInput("the multipart/mixed Content-Type has no boundary parameter")
    found: dict[str, bytes] = {}
    for number, (headers, content) in enumerate(_multipart_parts(body, boundary), start=1):
        part_type = media_type(headers.get("content-type"))
        if part_type == "application/pkcs7-mime":
            smime_type = (_parameter(headers["content-type"], "smime-type") or "").lower()
            if smime_type == "server-generated-key":
                raise BadInput("the server sent an encrypted private key (RFC 7030 §4.4.2); "
                               "fleetpki asks for the unencrypted application/pkcs8 form")
            part_type = CT_CERTS_ONLY
        if part_type not in (CT_PKCS8, CT_CERTS_ONLY):
            continue  # an unknown extra part: tolerated, as MIME readers do
        if part_type in found:
            raise BadInput(f"the serverkeygen response has two {part_type} parts")
        try:
            found[part_type] = decode_base64_body(content)
        except BadInput as exc:
            raise BadInput(f"part {number} ({part_type}): {exc}") from None
    for needed in (CT_PKCS8, CT_CERTS_ONLY):
        if needed not in found:
            raise BadInput(f"the serverkeygen response has no {needed} part (RFC 7030 §4.4.2)")
    key_der = found[CT_PKCS8]
    try:
        serialization.load_der_private_key(key_der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise BadInput(f"the application/pkcs8 part is not an unencrypted private key: "
                       f"{exc}") from None
    return key_der, load_certs_only(found[CT_CERTS_ONLY])


def _trimmed(data: bytes, start: int, end: int) -> tuple[int, int]:
    """Indexes of data[start:end] without surrounding ASCII white space."""
    while start < end and data[start] in b" \t\r\n\v\f":
        start += 1
    while end > start and data[end - 1] in b" \t\r\n\v\f":
        end -= 1
    return start, end


def _pem_payload(body: bytes, start: int, end: int) -> tuple[int, int]:
    """Indexes of the base64 inside a PEM certificate request; BadInput for any other PEM."""
    match = _PEM_BLOCK.fullmatch(body, start, end)
    if match is None:
        raise BadInput("the body starts like PEM but is not one complete "
                       "-----BEGIN ...----- / -----END ...----- block")
    label = match.group(1)
    if match.group(3) != label:
        raise BadInput("the PEM block's BEGIN and END labels differ")
    if label not in _PEM_CSR_LABELS:
        raise BadInput(f"the body is a PEM {label.decode()!r} block; EST bodies are base64 DER "
                       "(RFC 7030 §4), and PEM is accepted only for a certificate request")
    inner_start, inner_end = _trimmed(body, match.start(2), match.end(2))
    if inner_start == inner_end:
        raise BadInput("the PEM certificate request is empty")
    return inner_start, inner_end


def _base64_defect(body: bytes, start: int, end: int, length: int) -> str:
    """Where base64 text in body[start:end] (line breaks aside) first goes wrong."""
    padding = 0
    for offset in range(start, end):
        byte = body[offset]
        if byte in b"\r\n":
            continue
        if byte == ord("="):
            padding += 1
            if padding > 2:
                return f"more than two '=' padding characters at offset {offset}"
        elif byte not in _BASE64_ALPHABET:
            shown = f"'{chr(byte)}' " if 0x20 < byte < 0x7F else ""
            return f"invalid character {shown}(0x{byte:02x}) at offset {offset}"
        elif padding:
            return f"data after '=' padding at offset {offset}"
    return (f"{length} base64 characters is not a multiple of 4: the body is truncated or "
            "its '=' padding is missing")


def _parameter(header: str, name: str) -> str | None:
    """A parameter of a Content-Type header value (quotes removed), or None."""
    for piece in header.split(";")[1:]:
        key, _, value = piece.partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"')
    return None


def _multipart_parts(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """The (lower-cased headers, content) of each body part (RFC 2046 §5.1.1)."""
    delimiter = b"--" + boundary.encode("ascii", errors="replace")
    parts: list[list[bytes]] = []
    current: list[bytes] | None = None
    for raw in body.split(b"\n"):
        line = raw.rstrip(b"\r").rstrip(b" \t")  # transport padding may follow a delimiter
        if line == delimiter + b"--":
            if current is not None:
                parts.append(current)
            break
        if line == delimiter:
            if current is not None:
                parts.append(current)
            current = []
        elif current is not None:
            current.append(raw.rstrip(b"\r"))
    else:
        raise BadInput(f"the multipart body has no closing '--{boundary}--' line (truncated?)")
    return [_split_part(number, lines) for number, lines in enumerate(parts, start=1)]


def _split_part(number: int, lines: list[bytes]) -> tuple[dict[str, str], bytes]:
    if b"" not in lines:
        raise BadInput(f"part {number} of the multipart body has no blank line after its headers")
    blank = lines.index(b"")
    headers: dict[str, str] = {}
    name = ""
    for line in lines[:blank]:
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            raise BadInput(f"part {number} has a header that is not ASCII") from None
        if text[:1] in (" ", "\t") and name:  # a folded header continues (RFC 5322 §2.2.3)
            headers[name] += " " + text.strip()
            continue
        name, colon, value = text.partition(":")
        if not colon:
            raise BadInput(f"part {number} has a header line without ':'")
        name = name.strip().lower()
        headers[name] = value.strip()
    return headers, b"\r\n".join(lines[blank + 1:])

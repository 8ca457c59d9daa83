"""dns-01 (RFC 8555 §8.4): a TXT record at _acme-challenge.<name> holding
base64url(SHA-256(key authorization)).

For a wildcard the record sits under the base name: "*.example.org" is validated at
"_acme-challenge.example.org" (RFC 8555 §7.1.4: the authorization names the base domain).
A CNAME at the record name is followed by the resolver, which is how a gateway delegates its
record to a zone it can update. Never used for ip identifiers (RFC 8738 §7): validation.py
refuses that combination before any query.
"""

from __future__ import annotations

import dns.exception
import dns.rdtypes.ANY.TXT

from fleetpki.protocols.acme.challenges.dnsclient import describe_failure, make_resolver
from fleetpki.protocols.acme.challenges.keyauth import dns_txt_value
from fleetpki.protocols.acme.challenges.problems import excerpt, problem
from fleetpki.protocols.acme.challenges.settings import ValidationSettings
from fleetpki.protocols.acme.challenges.target import Target

LABEL = "_acme-challenge"
_SHOWN_RECORDS = 4


def record_name(target: Target) -> str:
    """RFC 8555 §8.4: the validation domain name is "_acme-challenge." + the name."""
    return f"{LABEL}.{target.host}"


async def validate_dns01(target: Target, token: str, key_auth: str,
                         settings: ValidationSettings) -> None:
    del token  # part of the key authorization, whose digest the record carries
    name = record_name(target)
    expected = dns_txt_value(key_auth)
    resolver = make_resolver(settings)
    try:
        answer = await resolver.resolve(name, "TXT")
    except dns.exception.DNSException as error:
        # NXDOMAIN, no TXT record, SERVFAIL, timeout: RFC 8555 §8.4 "If no DNS record is
        # found ... the validation fails", and the "dns" type says where to look.
        raise problem("dns", f"TXT lookup of {name}: {describe_failure(error, settings)}; "
                             f"expected a record holding {expected!r}") from None
    values = [_text(rdata) for rdata in answer]
    # RFC 8555 §8.4 step 3: one of the TXT records must match; others may be left over
    # from other challenges.
    if expected in values:
        return
    shown = ", ".join(excerpt(value, 48) for value in values[:_SHOWN_RECORDS])
    more = "" if len(values) <= _SHOWN_RECORDS else f" and {len(values) - _SHOWN_RECORDS} more"
    raise problem("incorrectResponse", f"TXT lookup of {name}: found {len(values)} "
                                       f"record(s), none holding {expected!r}: {shown}{more}")


def _text(rdata: object) -> str:
    """A TXT record's value: its character-strings joined (a long value is split into
    strings of at most 255 bytes)."""
    if not isinstance(rdata, dns.rdtypes.ANY.TXT.TXT):
        return ""
    return b"".join(rdata.strings).decode("ascii", "backslashreplace")

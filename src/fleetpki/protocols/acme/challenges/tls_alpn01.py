"""tls-alpn-01 (RFC 8737 §3; RFC 8738 §6 for ip identifiers).

Connect to each address of the host in turn (addresses.py) on `tls_alpn_port` until one
accepts the TCP connection, then handshake with ALPN offering only "acme-tls/1" and an SNI
naming the identifier, check that acme-tls/1 was negotiated, and check the certificate the
peer presented (alpn_certificate.py). Nothing is sent after the handshake.
"""

from __future__ import annotations

import asyncio
import ssl

from fleetpki.protocols.acme.challenges.addresses import bracketed, resolve
from fleetpki.protocols.acme.challenges.alpn_certificate import check_certificate
from fleetpki.protocols.acme.challenges.keyauth import key_authorization_digest
from fleetpki.protocols.acme.challenges.problems import problem, reason
from fleetpki.protocols.acme.challenges.settings import ValidationSettings
from fleetpki.protocols.acme.challenges.target import Target

ACME_TLS_ALPN = "acme-tls/1"
_CLOSE_WAIT = 1.0  # seconds granted to a polite close before the transport is aborted


def server_name(target: Target) -> str:
    """The SNI host name. RFC 8737 §3: the domain name being validated. RFC 8738 §6: SNI
    cannot carry an IP address (RFC 6066 §3), so an ip identifier is named by its
    in-addr.arpa / ip6.arpa reverse name, written without a trailing dot as RFC 6066 requires.
    """
    return target.ip.reverse_pointer if target.ip is not None else target.host


def client_context() -> ssl.SSLContext:
    # RFC 8737 §4: the certificate is not authenticated the RFC 5280 way, so no trust store,
    # no host name check; §4: only TLS 1.2 or higher; §3: ALPN with the single protocol name.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols([ACME_TLS_ALPN])
    return context


async def validate_tls_alpn01(target: Target, token: str, key_auth: str,
                              settings: ValidationSettings) -> None:
    del token  # part of the key authorization, which is what the certificate proves
    port = settings.tls_alpn_port
    sni = server_name(target)
    addresses = await resolve(target.host, settings)
    unreachable: list[str] = []
    for address in addresses:
        where = f"TLS to {address} port {port} (SNI {sni}, ALPN {ACME_TLS_ALPN})"
        try:
            async with asyncio.timeout(settings.timeout):
                _reader, writer = await asyncio.open_connection(address, port)
        except TimeoutError:
            unreachable.append(f"{bracketed(address)}: no connection within {settings.timeout:g} s")
            continue
        except OSError as error:
            unreachable.append(f"{bracketed(address)}: {reason(error)}")
            continue
        try:
            der = await _handshake(writer, sni, where, settings)
        finally:
            await _close(writer)
        check_certificate(der, target, key_authorization_digest(key_auth), where)
        return
    raise problem("connection", f"tls-alpn-01 for {target.identifier}: could not connect to "
                                f"{target.host} port {port} ({'; '.join(unreachable)})")


async def _handshake(writer: asyncio.StreamWriter, sni: str, where: str,
                     settings: ValidationSettings) -> bytes:
    """The peer's certificate (DER), once acme-tls/1 is negotiated over TLS 1.2 or later."""
    try:
        async with asyncio.timeout(settings.timeout):
            await writer.start_tls(client_context(), server_hostname=sni,
                                   ssl_handshake_timeout=settings.timeout)
    except TimeoutError:
        raise problem("tls", f"{where}: no TLS handshake within {settings.timeout:g} s") \
            from None
    except (ssl.SSLError, OSError) as error:
        raise problem("tls", f"{where}: the TLS handshake failed: {reason(error)}") from None
    tls = writer.get_extra_info("ssl_object")
    if not isinstance(tls, ssl.SSLObject):
        raise problem("tls", f"{where}: no TLS session after the handshake")
    # RFC 8737 §3: acme-tls/1 must have been negotiated; a server that answers without ALPN
    # (or with another protocol) is not taking part in the challenge.
    negotiated = tls.selected_alpn_protocol()
    if negotiated != ACME_TLS_ALPN:
        shown = "no ALPN protocol" if negotiated is None else f"ALPN {negotiated!r}"
        raise problem("tls", f"{where}: the server negotiated {shown}, not {ACME_TLS_ALPN}")
    if tls.version() not in ("TLSv1.2", "TLSv1.3"):  # RFC 8737 §4; the context insists too
        raise problem("tls", f"{where}: the server negotiated {tls.version()}; TLS 1.2 or "
                             "later is required")
    der = tls.getpeercert(binary_form=True)
    if not der:
        raise problem("tls", f"{where}: the server presented no certificate")
    return der


async def _close(writer: asyncio.StreamWriter) -> None:
    """RFC 8737 §4: once the handshake is done, send nothing more and close at once."""
    writer.close()
    try:
        async with asyncio.timeout(_CLOSE_WAIT):
            await writer.wait_closed()
    except Exception:  # noqa: BLE001 - the outcome is known; an untidy close changes nothing
        writer.transport.abort()

"""CRLs that fleetpki publishes, judged by `openssl verify`, `openssl crl` and pkilint, and
fetched from `fleetpki serve` at the URLs the certificates carry.

One home for the module, with one profile per revocation policy (support.revocation_home): the
complete CRL of the issuer (no issuingDistributionPoint), eight partitions with delta CRLs,
keep_expired, short_lived and publish_on_revoke. Certificates come from `fleetpki issue` with
CSRs made by openssl. Tests that change revocation state issue their own certificates; the
ones that need the server come last, so the server's own publishing (check_interval 1 s) runs
only while they do.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from support.fleet_server import RunningServer, fleet_server
from support.http_head import head
from support.lint import lint_certificate, lint_crl
from support.revocation_home import (
    Issued,
    RevocationHome,
    crl_entries,
    curl,
    openssl_date,
    prepare_revocation_home,
    run_tool,
)

EXPIRING = "2s"  # validity of the certificates that must have expired by the first publication
SCOPE_ERRORS = ("different CRL scope", "unable to get certificate CRL")


@dataclass(frozen=True)
class Pki:
    home: RevocationHome
    certs: dict[str, Issued]
    invalidity: dt.datetime  # of plain-revoked
    root_crl: Path

    @property
    def complete(self) -> Path:
        return self.home.crl_directory / "issuing.crl"

    def verify(self, cert: Issued, *crls: Path, use_deltas: bool = False,
               check_all: bool = False) -> tuple[bool, str]:
        """`openssl verify` with CRL checking of the leaf (of the whole chain with check_all);
        (accepted, openssl's output)."""
        args = ["verify", "-crl_check_all" if check_all else "-crl_check",
                "-CAfile", str(self.home.root_pem), "-untrusted", str(self.home.issuing_pem)]
        if use_deltas:
            args.append("-use_deltas")
        for crl in crls:
            args += ["-CRLfile", str(crl)]
        result = run_tool("openssl", *args, str(cert.pem))
        output = result.stdout + result.stderr
        return result.returncode == 0 and f"{cert.pem}: OK" in output, output

    def shard_files(self, cert: Issued) -> tuple[Path, Path]:
        """(base, delta) of the partition the certificate points at."""
        [base_url], [delta_url] = cert.crl_urls, cert.delta_urls
        return self.home.crl_file(base_url), self.home.crl_file(delta_url)


@pytest.fixture(scope="module")
def pki(initialised_home_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Pki:
    home = prepare_revocation_home(initialised_home_template, tmp_path_factory.mktemp("crl"),
                                   check_interval="1s")
    certs: dict[str, Issued] = {}
    # First the two that expire early: listed on a CRL while valid, expired by the next one.
    for name, profile in (("kept-expired", "kept"), ("plain-expired", "plain")):
        certs[name] = home.issue(profile, name, validity=EXPIRING)
        home.revoke(certs[name], "superseded")
    home.publish(force=True)
    listed = crl_entries(home.crl_directory / "issuing.crl")
    assert {certs["kept-expired"].serial, certs["plain-expired"].serial} <= listed.keys()
    for name, profile in (("plain-good", "plain"), ("plain-revoked", "plain"),
                          ("sharded-good", "sharded"), ("sharded-revoked", "sharded"),
                          ("brief", "brief"), ("kept-good", "kept")):
        certs[name] = home.issue(profile, name)
    # inside the certificate's life (an earlier date would be recorded as its notBefore)
    invalidity = certs["plain-revoked"].cert.not_valid_before_utc + dt.timedelta(minutes=1)
    home.revoke(certs["plain-revoked"], "keyCompromise", invalidity_date=invalidity)
    home.revoke(certs["sharded-revoked"], "affiliationChanged")
    expired = max(certs[n].cert.not_valid_after_utc for n in ("kept-expired", "plain-expired"))
    time.sleep(max(0.0, (expired - dt.datetime.now(dt.UTC)).total_seconds() + 1.1))
    home.publish(force=True)
    return Pki(home, certs, invalidity, home.root_crl())


# -- the complete CRL -------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "reason"), [
    ("plain-good", None), ("plain-revoked", "Key Compromise"),
    ("sharded-good", None), ("sharded-revoked", "Affiliation Changed"),
])
def test_openssl_judges_every_profile_by_the_complete_crl(pki: Pki, name: str,
                                                          reason: str | None) -> None:
    cert = pki.certs[name]
    accepted, output = pki.verify(cert, pki.complete)
    entries = crl_entries(pki.complete)
    if reason is None:
        assert accepted, output
        assert cert.serial not in entries
    else:
        assert not accepted and "certificate revoked" in output, output
        assert reason in entries[cert.serial], entries[cert.serial]


def test_complete_crl_has_no_idp_and_carries_the_invalidity_date(pki: Pki) -> None:
    text = run_tool("openssl", "crl", "-inform", "DER", "-in", str(pki.complete), "-noout",
                    "-text").stdout
    assert "Issuing Distribution Point" not in text
    entry = crl_entries(pki.complete)[pki.certs["plain-revoked"].serial]
    assert f"Invalidity Date: \n                {openssl_date(pki.invalidity)}" in entry, entry


def test_crl_check_all_uses_the_roots_crl_for_the_issuing_ca(pki: Pki) -> None:
    good, revoked = pki.certs["plain-good"], pki.certs["plain-revoked"]
    accepted, output = pki.verify(good, pki.complete, pki.root_crl, check_all=True)
    assert accepted, output
    accepted, output = pki.verify(revoked, pki.complete, pki.root_crl, check_all=True)
    assert not accepted and "certificate revoked" in output, output
    # Without the root's CRL the issuing CA's status is unknown: the root's CRL was used.
    accepted, output = pki.verify(good, pki.complete, check_all=True)
    assert not accepted and "unable to get certificate CRL" in output, output


# -- partitions ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "reason"), [
    ("sharded-good", None), ("sharded-revoked", "Affiliation Changed"),
])
def test_shard_crl_judges_the_certificates_of_its_shard(pki: Pki, name: str,
                                                        reason: str | None) -> None:
    cert = pki.certs[name]
    [url] = cert.crl_urls
    base, _ = pki.shard_files(cert)
    text = run_tool("openssl", "crl", "-inform", "DER", "-in", str(base), "-noout",
                    "-text").stdout
    # RFC 5280 §5.2.5: the partition names the very URL its certificates carry.
    assert f"Issuing Distribution Point: critical\n                Full Name:\n" \
           f"                  URI:{url}" in text, text
    assert "Only User Certificates" in text
    accepted, output = pki.verify(cert, base)
    if reason is None:
        assert accepted, output
    else:
        assert not accepted and "certificate revoked" in output, output
        assert reason in crl_entries(base)[cert.serial]


@pytest.mark.parametrize("name", ["sharded-good", "sharded-revoked"])
def test_the_crl_of_another_shard_is_not_accepted_for_a_certificate(pki: Pki, name: str
                                                                    ) -> None:
    cert = pki.certs[name]
    own, _ = pki.shard_files(cert)
    others = sorted(p for p in own.parent.glob("sharded-*.crl")
                    if p != own and not p.name.endswith("-delta.crl"))
    assert len(others) == 7, others
    for other in others:
        accepted, output = pki.verify(cert, other)
        assert not accepted and any(e in output for e in SCOPE_ERRORS), (other, output)


def test_delta_crl_lists_a_revocation_made_after_its_base(pki: Pki) -> None:
    home = pki.home
    cert = home.issue("sharded", "sharded-late")
    base, delta = pki.shard_files(cert)
    base_before = base.read_bytes()
    home.revoke(cert, "cessationOfOperation")
    home.publish()
    assert base.read_bytes() == base_before, "the base was not due: only its delta is re-signed"
    accepted, output = pki.verify(cert, base)
    assert accepted, f"the base alone predates the revocation: {output}"
    accepted, output = pki.verify(cert, base, delta, use_deltas=True)
    assert not accepted and "certificate revoked" in output, output
    assert "Cessation Of Operation" in crl_entries(delta)[cert.serial]
    base_number = run_tool("openssl", "crl", "-inform", "DER", "-in", str(base), "-noout",
                           "-crlnumber").stdout.strip().split("=")[1]
    text = run_tool("openssl", "crl", "-inform", "DER", "-in", str(delta), "-noout",
                    "-text").stdout
    indicator = re.search(r"Delta CRL Indicator: critical\n\s+(\S+)", text)
    assert indicator is not None, text
    assert int(indicator.group(1)) == int(base_number, 16)


def test_lifting_a_hold_publishes_remove_from_crl_in_the_next_delta(pki: Pki) -> None:
    home = pki.home
    cert = home.issue("sharded", "sharded-held")
    base, delta = pki.shard_files(cert)
    home.revoke(cert, "certificateHold")
    home.publish(force=True)  # the base lists the hold
    assert "Certificate Hold" in crl_entries(base)[cert.serial]
    accepted, output = pki.verify(cert, base, delta, use_deltas=True)
    assert not accepted and "certificate revoked" in output, output

    home.cli("certs", "release-hold", cert.serial_hex)
    home.publish()
    assert "Remove From CRL" in crl_entries(delta)[cert.serial]
    accepted, output = pki.verify(cert, base)
    assert not accepted, f"the base still lists the hold: {output}"
    accepted, output = pki.verify(cert, base, delta, use_deltas=True)
    assert accepted, output

    again = home.run("certs", "release-hold", cert.serial_hex)
    assert again.exit_code != 0 and "not on hold" in again.output, again.output


def test_a_held_certificate_can_then_be_revoked_for_good(pki: Pki) -> None:
    """A hold is temporary: it ends in a release or in a permanent revocation (RFC 5280
    §5.3.1 certificateHold; the delta then lists the new reason)."""
    home = pki.home
    cert = home.issue("sharded", "sharded-hold-then-lost")
    _, delta = pki.shard_files(cert)
    home.revoke(cert, "certificateHold")
    home.publish()
    result = home.run("certs", "revoke", cert.serial_hex, "--reason", "keyCompromise")
    assert result.exit_code == 0, (
        "src bug (store/sql/revocation.py RevocationTables.revoke): a certificate on "
        "certificateHold cannot be revoked permanently; `certs revoke` answers "
        f"{result.output.strip()!r}. The only way out is release-hold then revoke, which "
        "publishes the compromised certificate as valid in between.")
    home.publish()
    assert "Key Compromise" in crl_entries(delta)[cert.serial]


# -- profile policies ---------------------------------------------------------------------------

def test_short_lived_certificates_carry_no_revocation_pointers(pki: Pki) -> None:
    brief = pki.certs["brief"]
    assert (brief.crl_urls, brief.delta_urls, brief.ocsp_urls) == ([], [], [])
    assert brief.cert.not_valid_after_utc - brief.cert.not_valid_before_utc <= dt.timedelta(
        days=7, minutes=5)  # the validity, plus the profile's backdating
    base = pki.home.base_url
    plain, sharded = pki.certs["plain-good"], pki.certs["sharded-good"]
    assert (plain.crl_urls, plain.delta_urls, plain.ocsp_urls) == (
        [f"{base}/crl/issuing.crl"], [], [f"{base}/ocsp"])
    [shard_url], [delta_url] = sharded.crl_urls, sharded.delta_urls
    assert re.fullmatch(rf"{re.escape(base)}/crl/issuing/sharded-[0-7]\.crl", shard_url)
    assert delta_url == shard_url.replace(".crl", "-delta.crl")


def test_publish_on_revoke_lists_the_serial_without_crl_publish(pki: Pki) -> None:
    home = pki.home
    cert = home.issue("urgent", "urgent-1")
    home.revoke(cert, "keyCompromise")
    assert "Key Compromise" in crl_entries(pki.complete)[cert.serial]
    accepted, output = pki.verify(cert, pki.complete)
    assert not accepted and "certificate revoked" in output, output


def test_revoking_twice_is_refused_and_changes_nothing(pki: Pki) -> None:
    home = pki.home
    cert = home.issue("urgent", "urgent-twice")
    home.revoke(cert, "superseded")
    crl_before, shown_before = pki.complete.read_bytes(), home.details(cert)
    audit_before = home.cli("audit", "list", "--limit", "100000")
    result = home.run("certs", "revoke", cert.serial_hex, "--reason", "keyCompromise")
    assert result.exit_code != 0 and "already revoked" in result.output, result.output
    assert pki.complete.read_bytes() == crl_before
    assert home.details(cert) == shown_before
    assert home.cli("audit", "list", "--limit", "100000") == audit_before
    assert "Superseded" in crl_entries(pki.complete)[cert.serial]


def test_an_invalidity_date_in_the_future_is_refused(pki: Pki) -> None:
    home = pki.home
    cert = home.issue("plain", "plain-future")
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    result = home.run("certs", "revoke", cert.serial_hex, "--reason", "keyCompromise",
                      "--invalidity-date", future)
    assert result.exit_code != 0 and "future" in result.output, result.output
    assert home.details(cert)["status"] == "valid"


def test_an_expired_entry_stays_on_one_crl_issued_after_its_expiry(pki: Pki) -> None:
    """RFC 5280 §3.3: "An entry MUST NOT be removed from the CRL until it appears on one
    regularly scheduled CRL issued beyond the revoked certificate's validity period." """
    plain = pki.certs["plain-expired"]
    this_update = x509.load_der_x509_crl(pki.complete.read_bytes()).last_update_utc
    assert plain.cert.not_valid_after_utc < this_update
    assert plain.serial in crl_entries(pki.complete), (
        "src bug (store/sql/revocation.py RevocationTables.revoked_entries keeps only "
        "not_after >= valid_at): an entry listed while the certificate was valid is dropped "
        "from the very first CRL signed after its notAfter; RFC 5280 §3.3 wants it on one "
        "CRL issued after expiry")


def test_keep_expired_keeps_entries_on_every_later_crl(pki: Pki) -> None:
    kept = pki.certs["kept-expired"]
    assert kept.cert.not_valid_after_utc < dt.datetime.now(dt.UTC)
    for _ in range(2):  # beyond the one CRL after expiry that every entry is owed
        pki.home.publish(force=True)
        assert kept.serial in crl_entries(pki.complete)


def test_crls_and_certificates_pass_pkilint(pki: Pki) -> None:
    home = pki.home
    cert = home.issue("sharded", "sharded-lint")  # so that a delta lists removeFromCRL
    home.revoke(cert, "certificateHold")
    home.publish()
    home.cli("certs", "release-hold", cert.serial_hex)
    home.publish()
    _, delta = pki.shard_files(cert)
    assert "Remove From CRL" in crl_entries(delta)[cert.serial]
    crls = [*sorted(home.crl_directory.rglob("*.crl")), pki.root_crl]
    assert len(crls) == 1 + 16 + 1
    findings = {str(crl): lint_crl(crl.read_bytes()) for crl in crls}
    assert {k: v for k, v in findings.items() if v} == {}
    for issued in [*pki.certs.values(), cert]:
        der = issued.cert.public_bytes(serialization.Encoding.DER)
        assert lint_certificate(der) == [], issued.name


# -- served by `fleetpki serve` (last: the server publishes on its own while it runs) ---------

@pytest.fixture(scope="module")
def served(pki: Pki) -> Iterator[RunningServer]:
    with fleet_server(pki.home.path, workers=2) as server:
        assert server.revocation_port == pki.home.port
        yield server


def test_crls_are_served_at_the_urls_the_certificates_carry(pki: Pki,
                                                            served: RunningServer) -> None:
    pki.home.publish()  # anything due is signed now, not while we compare
    sharded = pki.certs["sharded-good"]
    for url in [*pki.certs["plain-good"].crl_urls, *sharded.crl_urls, *sharded.delta_urls]:
        reply = curl(url)
        asked = time.time()
        assert reply.status == 200, (url, reply)
        assert reply.headers["content-type"] == "application/pkix-crl"
        published = pki.home.crl_file(url).read_bytes()
        assert reply.body == published, url
        next_update = x509.load_der_x509_crl(published).next_update_utc
        assert next_update is not None
        max_age = re.search(r"max-age=(\d+)", reply.headers["cache-control"])
        assert max_age is not None, reply.headers
        assert abs(int(max_age.group(1)) - (next_update.timestamp() - asked)) <= 5, (
            reply.headers, next_update)


def test_head_on_a_crl_answers_as_the_get_without_content(pki: Pki,
                                                          served: RunningServer) -> None:
    """RFC 9110 §9.3.2: the GET's status and headers, Content-Length included, no content."""
    pki.home.publish()  # anything due is signed now, not while we compare
    for url in [pki.certs["plain-good"].crl_urls[0], pki.certs["sharded-good"].crl_urls[0]]:
        got, reply = curl(url), head(url)
        assert (reply.status, got.status) == (200, 200), (url, reply, got.status)
        assert reply.after_header == b"", url
        assert int(reply.headers["content-length"]) == len(got.body) > 0
        for name in ("content-type", "etag", "last-modified", "expires"):
            assert reply.headers[name] == got.headers[name], (url, name)
        cached = head(url, headers={"If-None-Match": got.headers["etag"]})
        assert (cached.status, cached.after_header) == (304, b""), (url, cached)
    assert head(f"{served.revocation_base}/crl/nope.crl").status == 404


@pytest.mark.parametrize("name", [
    "nope.crl", "issuing/sharded-8.crl", "issuing/nope.crl", "../fleetpki.db",
    "..%2ffleetpki.db", "%2e%2e/fleetpki.toml", "issuing/../issuing.crl",
    "issuing/..%2f..%2ffleetpki.db", "issuing/%2e%2e/issuing.crl", "/etc/passwd",
    ".publish.lock", "../secrets/key-passphrase", "issuing.crl/../../fleetpki.db",
])
def test_unknown_names_and_path_traversal_get_404(pki: Pki, served: RunningServer,
                                                  name: str) -> None:
    reply = curl(f"{served.revocation_base}/crl/{name}")
    assert reply.status == 404, (name, reply.status, reply.body[:200])
    assert reply.headers.get("content-type", "").startswith("text/plain")


def test_an_encoded_slash_in_a_crl_url_is_not_a_separator(pki: Pki,
                                                          served: RunningServer) -> None:
    """RFC 3986 §2.2: '%2F' is a character of a segment, so these name no published CRL."""
    pki.home.publish()
    sharded = pki.certs["sharded-good"]
    for url in [*pki.certs["plain-good"].crl_urls, *sharded.crl_urls]:
        assert curl(url).status == 200, url
        base, _, path = url.partition("/crl/")
        for confused in [f"{base}/crl%2F{path}", f"{base}/crl/{path.replace('/', '%2f')}"]:
            if confused.endswith(f"/crl/{path}"):
                continue  # the name held no '/' to encode
            reply = curl(confused)
            assert reply.status == 404, (confused, reply.status, reply.body[:200])


def test_a_crl_is_not_sent_again_to_a_cache_that_holds_it(pki: Pki,
                                                          served: RunningServer) -> None:
    url = pki.certs["plain-good"].crl_urls[0]
    etag = curl(url).headers["etag"]
    assert curl(url, "-H", f"If-None-Match: {etag}").status == 304
    assert curl(url, "-H", 'If-None-Match: "something-else"').status == 200
    # RFC 9110 §13.1.2: If-None-Match takes a list and compares weakly (as /ocsp does).
    for header in (f'"something-else", {etag}', f"W/{etag}", "*"):
        status = curl(url, "-H", f"If-None-Match: {header}").status
        assert status == 304, (
            f"src bug (revocation/crl_http.py CrlFiles._serve): If-None-Match: {header} "
            f"answered {status}; it compares the header to the ETag as one exact string")
    # If-Modified-Since counts only without If-None-Match (RFC 9110 §13.2.2)
    last_modified = curl(url).headers["last-modified"]
    earlier = email.utils.formatdate(
        email.utils.parsedate_to_datetime(last_modified).timestamp() - 1, usegmt=True)
    assert curl(url, "-H", f"If-Modified-Since: {last_modified}").status == 304
    assert curl(url, "-H", f"If-Modified-Since: {earlier}").status == 200
    assert curl(url, "-H", "If-Modified-Since: yesterday").status == 200
    assert curl(url, "-H", f"If-Modified-Since: {last_modified}",
                "-H", 'If-None-Match: "something-else"').status == 200


def test_serve_publishes_a_cli_revocation_within_seconds(pki: Pki,
                                                         served: RunningServer) -> None:
    home = pki.home
    cert = home.issue("sharded", "sharded-live")
    [delta_url] = cert.delta_urls
    home.revoke(cert, "keyCompromise")  # no `crl publish`: the server's loop signs the delta
    deadline = time.monotonic() + 20
    listed = False
    while not listed and time.monotonic() < deadline:
        reply = curl(delta_url)
        assert reply.status == 200
        delta = x509.load_der_x509_crl(reply.body)
        listed = delta.get_revoked_certificate_by_serial_number(cert.serial) is not None
        if not listed:
            time.sleep(0.25)
    assert listed, f"the delta at {delta_url} did not list the revocation within 20 s"
    base, _ = pki.shard_files(cert)
    accepted, output = pki.verify(cert, base, home.crl_file(delta_url), use_deltas=True)
    assert not accepted and "certificate revoked" in output, output

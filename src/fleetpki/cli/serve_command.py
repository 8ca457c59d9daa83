"""`fleetpki serve`: the enrollment protocols over HTTPS, in several worker processes."""

from __future__ import annotations

import errno
import ssl
import sys
from typing import TYPE_CHECKING

import click

from fleetpki import logs
from fleetpki.cli.context import CliState, handle_errors, pass_state
from fleetpki.core.errors import ConfigError
from fleetpki.metrics.process import multiprocess_metrics, worker_exited
from fleetpki.server_settings import Address
from fleetpki.serving.tls import server_tls_context
from fleetpki.wiring import open_fleet

if TYPE_CHECKING:
    from fleetpki.serving.workers import WorkerApps


def register(cli: click.Group) -> None:
    cli.add_command(serve_command)


def parse_address(text: str | None, option: str = "--listen") -> Address | None:
    if text is None:
        return None
    try:
        return Address.parse(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


revocation_listen_option = click.option(
    "--revocation-listen", default=None,
    help="HOST:PORT for CRLs and OCSP over plain HTTP (default: revocation.listen; "
         "certificates keep pointing at revocation.base_url).")


admin_listen_option = click.option(
    "--admin-listen", default=None,
    help="HOST:PORT for the admin API and dashboard over HTTPS (default: admin.listen).")


@click.command("serve")
@click.option("--listen", default=None, help="HOST:PORT for HTTPS (default: server.listen).")
@revocation_listen_option
@admin_listen_option
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Worker processes (default: server.workers).")
@pass_state
@handle_errors
def serve_command(state: CliState, listen: str | None, revocation_listen: str | None,
                  admin_listen: str | None, workers: int | None) -> None:
    """Serve EST (RFC 7030) on HTTPS, and CRLs and OCSP on plain HTTP, until SIGTERM or
    Ctrl-C. CRLs due for re-signing are published while serving."""
    sys.exit(run_server(state, parse_address(listen), workers,
                        parse_address(revocation_listen, "--revocation-listen"),
                        parse_address(admin_listen, "--admin-listen")))


def run_server(state: CliState, listen: Address | None, workers: int | None,
               revocation_listen: Address | None = None, admin_listen: Address | None = None
               ) -> int:
    # Here, not at the top: the front ends and uvicorn are for serve, and every command
    # imports this module (setup_commands reuses run_server).
    from fleetpki.serve_wiring import worker_apps
    from fleetpki.serving.workers import Listener, serve

    fleet = state.fleet()
    settings = fleet.settings
    fleet.default_profile  # noqa: B018 - a bad est.default_profile refuses to start, here
    fleet.scep_default_profile  # noqa: B018 - and so does a bad scep.default_profile
    fleet.acme_default_profile  # noqa: B018 - and a bad acme.default_profile
    scep_profiles = sorted(name for name, p in fleet.profiles.items() if p.enrollment.scep)
    acme_profiles = sorted(fleet.acme_profiles())
    credentials = fleet.server_credentials()
    trust = fleet.client_trust_pem()
    # Before forking: responders and CRLs exist when the first request arrives.
    fleet.publish_crls()
    passphrase = settings.passphrase.read()
    home = settings.home
    # The parent must not hold database connections across fork: each worker opens its own.
    state.close()
    address = listen or settings.server.listen

    def tls_context() -> ssl.SSLContext:
        return server_tls_context(credentials.chain_file, credentials.key_file,
                                  key_password=passphrase, client_trust_pem=trust)

    listeners = [Listener("https", address.host, address.port, tls_context)]
    proxy = settings.server.proxy_listen
    if proxy is not None:
        listeners.append(Listener("proxy", proxy.host, proxy.port, None))
    revocation = revocation_listen or settings.revocation.listen
    if revocation is not None:
        listeners.append(Listener("revocation", revocation.host, revocation.port, None))
    admin = admin_listen or settings.admin.listen
    if admin is not None:
        listeners.append(Listener("admin", admin.host, admin.port, tls_context))

    def app_factory() -> WorkerApps:
        fleet = open_fleet(home)
        logs.configure(home / "logs" / "fleetpki.log", fmt=fleet.settings.log_format,
                       level=fleet.settings.log_level)
        return worker_apps(fleet)

    def ready(bound: list[tuple[str, int]]) -> None:
        addresses = {listener.name: Address(*where)
                     for listener, where in zip(listeners, bound, strict=True)}
        click.echo(f"fleetpki serving EST on https://{addresses['https']}/.well-known/est/ "
                   f"({workers or settings.server.workers} workers)")
        if acme_profiles:
            click.echo(f"ACME on https://{addresses['https']}/acme/directory (profiles: "
                       f"{', '.join(acme_profiles)}; EAB keys: `fleetpki acme eab create`)")
        if "proxy" in addresses:
            click.echo(f"proxy listener (plain HTTP, trusted proxies only) on "
                       f"http://{addresses['proxy']}")
        if "revocation" in addresses:
            click.echo(f"CRLs and OCSP on http://{addresses['revocation']}/crl/ and /ocsp")
            click.echo(f"CMP on http://{addresses['revocation']}/.well-known/cmp/p/PROFILE and "
                       "over HTTPS")
            if scep_profiles:
                click.echo(f"SCEP on http://{addresses['revocation']}/scep/PROFILE and over "
                           f"HTTPS (profiles: {', '.join(scep_profiles)})")
        if "admin" in addresses:
            click.echo(f"admin API and dashboard on https://{addresses['admin']}/ "
                       "(log in with a token from `fleetpki admin token create`)")
        click.echo(f"server certificate: {credentials.chain_file}", err=True)
        sys.stdout.flush()

    try:
        # Before the fork: the workers add up their metrics through files (metrics/process.py).
        with multiprocess_metrics(home / "run"):
            return serve(app_factory, listeners, workers=workers or settings.server.workers,
                         on_ready=ready, on_worker_exit=worker_exited)
    except OSError as error:
        if error.errno not in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            raise
        ports = ", ".join(f"{listener.host}:{listener.port}" for listener in listeners)
        cause = {
            errno.EADDRINUSE: "another program (or another fleetpki serve) holds a port; "
                              "stop it, or",
            errno.EACCES: "ports below 1024 need root or CAP_NET_BIND_SERVICE "
                          "(docs/operations.md); grant it, or",
            errno.EADDRNOTAVAIL: "no network interface of this machine has that address;",
        }[error.errno]
        raise ConfigError(f"{error.strerror} (listening on {ports}): {cause} choose other "
                          "addresses with --listen / --revocation-listen / --admin-listen, or "
                          "server.listen / revocation.listen / admin.listen in "
                          "fleetpki.toml") from None

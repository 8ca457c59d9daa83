"""The server side of a fleet simulation: a throwaway fleetpki home, run in-process.

It is a real home (CA hierarchy, profile, manufacturer CA, SQLite store) made the way
`fleetpki init` makes one, with three differences a simulation needs: the clock is the
simulator's, the store skips fsync (it is deleted afterwards), and enrollment rate limits
are off (they count real seconds, and a simulated day passes in a moment).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleetpki.ca.ceremony import ca_name
from fleetpki.core.keys import KeySpec
from fleetpki.core.reasons import RevocationReason
from fleetpki.protocols.est.handler import EstHandler
from fleetpki.ra.api import Authorization
from fleetpki.simulator.engine import Fleet as SimulationFleet
from fleetpki.simulator.engine import ShardResult, SimClock, simulate
from fleetpki.simulator.scenario import POLICIES, Scenario
from fleetpki.wiring import Fleet, open_fleet, prepare_home

PROFILE = "fleet"
OPERATOR = Authorization(actor="operator:simulation")
_SETTINGS = f"""# A fleet simulation's server: rate limits off (they count real seconds).
[est]
default_profile = "{PROFILE}"

[est.rate_limits]
per_credential = "off"
per_address = "off"
"""


def _seconds(delta: dt.timedelta) -> str:
    return f"{int(delta.total_seconds())}s"


def profile_toml(scenario: Scenario) -> str:
    """The one profile the simulated fleet enrolls into."""
    lifetime = _seconds(scenario.lifetime)
    return f"""# The simulated fleet's profile (fleetpki simulate).
[profiles.{PROFILE}]
description = "Simulated remote sensors"
issuer = "issuing"
device_id_from = "CN"
keys.allowed = ["ec-p256"]
validity = {{ default = "{lifetime}", maximum = "{lifetime}" }}
subject.attributes.CN = {{ required = true, pattern = "^DEV[0-9]{{7}}$" }}
extensions = {{ key_usage = ["digitalSignature"], extended_key_usage = ["clientAuth"] }}

[profiles.{PROFILE}.renewal]
window_fraction = {scenario.window_fraction}
grace_after_expiry = "{_seconds(scenario.grace_after_expiry)}"
info_interval = "{_seconds(scenario.info_interval)}"
"""


class FactoryLine:
    """The manufacturer's side: a CA that signs each device's IDevID.

    One key pair serves every simulated IDevID: the TLS handshake, where that key would
    prove possession, is not simulated (virtual_network.py), so per-device keys would cost
    time and change nothing the server checks."""

    def __init__(self, now: dt.datetime) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._device_key = ec.generate_private_key(ec.SECP256R1()).public_key()
        self._name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Simulated Maker"),
                                x509.NameAttribute(NameOID.COMMON_NAME, "Simulated IDevID CA")])
        self._not_before = now - dt.timedelta(days=1)
        self._not_after = now + dt.timedelta(days=30 * 365)
        self.ca = (x509.CertificateBuilder().subject_name(self._name).issuer_name(self._name)
                   .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(self._not_before).not_valid_after(self._not_after)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                                False, False), critical=True)
                   .sign(self._key, hashes.SHA256()))

    def idevid(self, device_id: str) -> x509.Certificate:
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, device_id)]))
                .issuer_name(self._name).public_key(self._device_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(self._not_before).not_valid_after(self._not_after)
                .sign(self._key, hashes.SHA256()))


class FleetOperator:
    """The scenario's operator: revocations and renewal advisories through the real RA."""

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet

    def revoke(self, certificate: x509.Certificate) -> None:
        self._fleet.revocations(OPERATOR).revoke(certificate.serial_number,
                                                 RevocationReason.key_compromise)

    def pull_renewals_forward(self, within: dt.timedelta, explanation: str) -> None:
        now = self._fleet.clock.now()
        self._fleet.renewal_advisories(OPERATOR).advise(
            PROFILE, start=now, end=now + within, issued_before=now, explanation=explanation)
        self._fleet.enrollment.refresh_advisories()


@dataclasses.dataclass(frozen=True)
class SimulatedServer:
    fleet: Fleet
    endpoint: EstHandler
    operator: FleetOperator
    factory: FactoryLine

    def close(self) -> None:
        self.fleet.close()


def simulated_server(home: Path, scenario: Scenario, clock: SimClock) -> SimulatedServer:
    """Create the home in an empty directory and open it on the simulator's clock."""
    if home.exists() and any(home.iterdir()):
        raise FileExistsError(f"{home} is not empty; a simulation starts from a new directory")
    clock.set(scenario.start - scenario.rollout - dt.timedelta(days=2))
    prepare_home(home)
    (home / "profiles.toml").write_text(profile_toml(scenario), encoding="utf-8")
    (home / "fleetpki.toml").write_text(_SETTINGS, encoding="utf-8")
    fleet = open_fleet(home, clock=clock, durable=False)
    admin = fleet.ca_admin(OPERATOR)
    spec = KeySpec.parse("ec-p256")
    admin.create_root("root", ca_name("Simulation Root CA", "fleetpki"), spec)
    admin.create_issuing("issuing", ca_name("Simulation Issuing CA", "fleetpki"), spec,
                         parent="root")
    factory = FactoryLine(clock.now())
    fleet.manufacturer_admin(OPERATOR).add(
        "simulated-maker", factory.ca.public_bytes(serialization.Encoding.PEM), PROFILE,
        device_id_from="serialNumber")
    return SimulatedServer(fleet, EstHandler(fleet.enrollment), FleetOperator(fleet), factory)



def run_shard(scenario: Scenario, policy: str, directory: Path, *, shard: int = 0,
              shards: int = 1, progress: Callable[[float], None] | None = None
              ) -> ShardResult:
    """One shard of one policy's run, on its own new server home under `directory`."""
    clock = SimClock(scenario.start)
    server = simulated_server(directory / f"{policy}-{shard}", scenario, clock)
    try:
        return simulate(SimulationFleet(scenario, POLICIES[policy], policy, server.endpoint,
                                        server.operator, server.factory, clock), progress,
                        shard=shard, shards=shards)
    finally:
        server.close()

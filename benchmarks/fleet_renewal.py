"""The renewal path the fleet simulator runs, set against the bare cryptography of a renewal.

    .venv/bin/python benchmarks/fleet_renewal.py [--devices 3000]

What one simulated renewal costs decides how large a fleet `fleetpki simulate` can run in a
given time, and it is also the in-process cost of an EST renewal on the server (no TLS, no
HTTP parsing). Measured in one process, in the same run:

  reference   the unavoidable work with `cryptography` alone: the device makes a P-256 key
              and a CSR; the CA parses the CSR, checks its signature, builds and signs a
              certificate with the extensions of a device profile.
  (a)         fleetpki's agent flow (agent/flow.py) through the EST front end
              (protocols/est/handler.py), the RA, the CA signer and the store: a device with
              a certificate in its renewal window asks renewalinfo, re-enrolls, and confirms
              the new certificate with a second renewalinfo. SQLite without fsync, as the
              simulator runs it.
  (b)         the same with the store durable (synchronous=FULL, fsync at each commit), as
              `fleetpki serve` runs it.

Reports renewals per second and CPU per renewal, and (a)/reference. Always exits 0.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleetpki.agent.flow import Enrollee
from fleetpki.agent.policy import RenewalPolicy
from fleetpki.protocols.est.handler import EstHandler
from fleetpki.simulation_setup import simulated_server
from fleetpki.simulator.device import VirtualDevice
from fleetpki.simulator.engine import SimClock, _run_session
from fleetpki.simulator.load import Load
from fleetpki.simulator.scenario import Scenario
from fleetpki.simulator.virtual_network import VirtualNetwork
from fleetpki.wiring import open_fleet

_DER = serialization.Encoding.DER


def bare_renewals(count: int) -> tuple[float, float]:
    """(renewals per second, CPU seconds per renewal) with cryptography alone."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench CA")])
    ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    now = dt.datetime.now(dt.UTC)
    began, began_cpu = time.perf_counter(), time.process_time()
    for index in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"DEV{index:07d}")])
        csr_der = (x509.CertificateSigningRequestBuilder().subject_name(subject)
                   .sign(key, hashes.SHA256()).public_bytes(_DER))
        csr = x509.load_der_x509_csr(csr_der)
        if not csr.is_signature_valid:
            raise RuntimeError("bad CSR")
        public = csr.public_key()
        (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca_name)
         .public_key(public).serial_number(x509.random_serial_number())
         .not_valid_before(now).not_valid_after(now + dt.timedelta(days=90))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                      False), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                        critical=False)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                        critical=False)
         .sign(ca_key, hashes.SHA256()).public_bytes(_DER))
    return count / (time.perf_counter() - began), (time.process_time() - began_cpu) / count


def fleetpki_renewals(count: int, directory: Path, *, durable: bool) -> tuple[float, float]:
    """(renewals per second, CPU seconds per renewal) through agent, EST, RA, CA and store."""
    scenario = Scenario(devices=count)
    clock = SimClock(scenario.start)
    server = simulated_server(directory, scenario, clock)
    if durable:  # the same home, reopened as `fleetpki serve` opens it
        server.close()
        fleet = open_fleet(directory, clock=clock)
        endpoint = EstHandler(fleet.enrollment)
    else:
        fleet, endpoint = server.fleet, server.endpoint
    clock.set(scenario.start)
    network = VirtualNetwork(endpoint, [], Load(scenario.start - dt.timedelta(days=1),
                                                scenario.end))
    rng, policy = random.Random(1), RenewalPolicy()
    devices = [VirtualDevice(i, f"DEV{i:07d}", server.factory.idevid(f"DEV{i:07d}"))
               for i in range(count)]
    enrollees = [Enrollee(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, d.device_id)]))
                 for d in devices]
    for device, enrollee in zip(devices, enrollees, strict=True):  # untimed: first identities
        _run_session(device, network, clock.now(), enrollee, policy, rng)
    clock.set(scenario.start + scenario.lifetime * 0.85)  # inside every renewal window
    began, began_cpu = time.perf_counter(), time.process_time()
    renewed = 0
    for device, enrollee in zip(devices, enrollees, strict=True):
        result = _run_session(device, network, clock.now(), enrollee, policy, rng)
        renewed += result.outcome.value == "renewed"
    elapsed, cpu = time.perf_counter() - began, time.process_time() - began_cpu
    fleet.close()
    if renewed != count:
        raise RuntimeError(f"only {renewed} of {count} devices renewed")
    return count / elapsed, cpu / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=3000)
    args = parser.parse_args()
    reference_rate, reference_cpu = bare_renewals(args.devices)
    with tempfile.TemporaryDirectory(prefix="fleetpki-bench-") as scratch:
        fast_rate, fast_cpu = fleetpki_renewals(args.devices, Path(scratch) / "a",
                                                durable=False)
        durable_rate, durable_cpu = fleetpki_renewals(args.devices, Path(scratch) / "b",
                                                      durable=True)
    print(f"{'measurement':<52} {'renewals/s':>11} {'CPU µs each':>12}")
    for label, rate, cpu in (
            ("reference: cryptography alone (key, CSR, verify, sign)", reference_rate,
             reference_cpu),
            ("(a) agent + EST + RA + CA + store, no fsync", fast_rate, fast_cpu),
            ("(b) the same, durable store (fsync per commit)", durable_rate, durable_cpu)):
        print(f"{label:<52} {rate:>11,.0f} {cpu * 1e6:>12,.0f}")
    print(f"(a) / reference: {fast_rate / reference_rate:.2f}   "
          f"(b) / reference: {durable_rate / reference_rate:.2f}")


if __name__ == "__main__":
    main()

"""The agent's configuration: what a good file gives, and how every mistake is named."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from fleetpki.agent.config import AgentConfigError, load_config
from fleetpki.cli import agent_main
from fleetpki.core.keys import KeySpec

MINIMAL = """
data_dir = "state"
[server]
url = "https://est.example.com:8443"
[device]
common_name = "sensor-0001"
"""

FULL = """
data_dir = "/var/lib/fleetpki-agent"
[server]
url = "https://est.example.com/pki/"
label = "sensor"
connect_timeout = "5s"
read_timeout = "1m"
[device]
common_name = "sensor-0001"
serial_number = "ACME-0001"
sans = ["dns:s1.fleet.internal", "ip:10.0.0.5", "uri:urn:dev:mac:0011223344ff"]
key_type = "ec-p384"
[policy]
renew_at_fraction = 0.5
spread_fraction = 0.2
retry_spread = 0.1
use_server_window = false
backoff_initial = "30s"
backoff_max = "1h"
grace = false
factory_fallback = false
server_keygen = true
[hook]
command = "/usr/local/bin/reload-broker --quiet 'two words'"
timeout = "10s"
[trust]
pinned_roots = ["sha256:%s"]
""" % ("AB" * 32)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_a_minimal_file_takes_the_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.data_dir == tmp_path / "state"  # relative to the file
    assert config.server_url == "https://est.example.com:8443"
    assert config.enrollee.subject == x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "sensor-0001")])
    assert config.enrollee.label is None and config.hook is None
    assert config.policy.key_spec == KeySpec.parse("ec-p256")
    assert config.policy.grace and config.policy.factory_fallback
    assert config.connect_timeout == dt.timedelta(seconds=10)


def test_every_key_is_read(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    assert config.enrollee.label == "sensor"
    assert config.enrollee.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == \
        "ACME-0001"
    assert config.enrollee.sans == (
        x509.DNSName("s1.fleet.internal"), x509.IPAddress(ipaddress.ip_address("10.0.0.5")),
        x509.UniformResourceIdentifier("urn:dev:mac:0011223344ff"))
    policy = config.policy
    assert (policy.renew_at_fraction, policy.spread_fraction) == (0.5, 0.2)
    assert policy.retry_spread == 0.1
    assert not policy.use_server_window and not policy.grace and not policy.factory_fallback
    assert policy.server_keygen and policy.key_spec == KeySpec.parse("ec-p384")
    assert policy.backoff_initial == dt.timedelta(seconds=30)
    assert policy.backoff_max == dt.timedelta(hours=1)
    assert config.hook is not None
    assert config.hook.command == ("/usr/local/bin/reload-broker", "--quiet", "two words")
    assert config.hook.timeout == dt.timedelta(seconds=10)
    assert config.pinned_roots == frozenset({"ab" * 32})
    assert config.read_timeout == dt.timedelta(minutes=1)


@pytest.mark.parametrize(("change", "names"), [
    (("data_dir", "datadir"), "datadir: unknown key"),
    (('[device]\n', '[device]\ncolour = "red"\n'), "device.colour: unknown key"),
    (('[server]\n', '[server]\nlabels = "x"\n'), "server.labels: unknown key"),
    (("https://est.example.com/pki/", "http://est.example.com"), "server.url: must start"),
    (('label = "sensor"', 'label = "Sensor!"'), "server.label: must be lower-case"),
    (('"5s"', '"5 seconds"'), "server.connect_timeout: duration"),
    (('"1m"', '"0s"'), "server.read_timeout: must be positive"),
    (('key_type = "ec-p384"', 'key_type = "dsa-1024"'), "device.key_type: unknown key type"),
    (('"ip:10.0.0.5"', '"ip:10.0.0.500"'), "device.sans: 'ip:10.0.0.500' must be"),
    (('"dns:s1.fleet.internal"', '"s1.fleet.internal"'), "device.sans:"),
    (('serial_number = "ACME-0001"', 'serial_number = "ACME_0001"'), "device.serial_number"),
    (("renew_at_fraction = 0.5", "renew_at_fraction = 1.5"), "policy: renew_at_fraction"),
    (("renew_at_fraction = 0.5", 'renew_at_fraction = "half"'), "policy.renew_at_fraction: "
                                                                "must be a number"),
    (("grace = false", "grace = 0"), "policy.grace: must be true or false"),
    (('backoff_max = "1h"', 'backoff_max = "10s"'), "policy: backoff_initial must be"),
    (('[policy]\n', '[policy]\njiter = true\n'), "policy.jiter: unknown key"),
    (('command = "/usr/local/bin/reload-broker --quiet \'two words\'"', "command = 5"),
     "hook.command: must be a string or a list"),
    (('command = "/usr/local/bin/reload-broker --quiet \'two words\'"', 'command = "a \'b"'),
     "hook.command: cannot be split"),
    (('timeout = "10s"', 'timeout = "2h"'), "hook.timeout: must be at most"),
    (('pinned_roots = ["sha256:', 'pinned_roots = ["sha1:'), "trust.pinned_roots: "),
    # Values the OS or date arithmetic would refuse only later, with a traceback:
    (('command = "/usr/local/bin/reload-broker --quiet \'two words\'"',
      'command = ["/usr/local/bin/reload-broker", "--quiet\\u0000"]'),
     "hook.command: must not contain a NUL character"),
    (('command = "/usr/local/bin/reload-broker --quiet \'two words\'"',
      'command = "/usr/local/bin/reload\\u0000-broker"'),
     "hook.command: must not contain a NUL character"),
    (('common_name = "sensor-0001"', 'common_name = "sensor\\u00000001"'),
     "device.common_name: must not contain a NUL character"),
    (('"5s"', '"99999999999999d"'), "server.connect_timeout: duration '99999999999999d' is "
                                    "longer than"),
    (('"5s"', '"6m"'), "server.connect_timeout: must be at most 5m"),
    (('backoff_max = "1h"', 'backoff_max = "99999999999999d"'),
     "policy.backoff_max: duration '99999999999999d' is longer than"),
    (('backoff_max = "1h"', 'backoff_max = "3651d"'), "policy.backoff_max: must be at most"),
    (('backoff_initial = "30s"', 'backoff_initial = "999999999s"'),
     "policy.backoff_initial: must be at most 3650d"),
])
def test_mistakes_name_the_file_and_the_key(tmp_path: Path, change: tuple[str, str],
                                            names: str) -> None:
    old, new = change
    assert old in FULL, old
    path = write(tmp_path, FULL.replace(old, new, 1))
    with pytest.raises(AgentConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}: ")
    assert names in str(error.value)


@pytest.mark.parametrize(("text", "names"), [
    ('[server]\nurl = "https://x"\n[device]\ncommon_name = "d"\n', "data_dir: is required"),
    ('data_dir = "d"\n[device]\ncommon_name = "d"\n', "server: is required"),
    ('data_dir = "d"\n[server]\nurl = "https://x"\n', "device: is required"),
    ('data_dir = "d"\n[server]\n[device]\ncommon_name = "d"\n', "server.url: is required"),
    ('data_dir = "d"\nserver = 1\n[device]\ncommon_name = "d"\n', "server: must be a table"),
    ('data_dir = "d"\n[server\n', "not valid TOML"),
])
def test_missing_parts_are_named(tmp_path: Path, text: str, names: str) -> None:
    with pytest.raises(AgentConfigError, match=names):
        load_config(write(tmp_path, text))


def test_a_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(AgentConfigError, match="no such file; write one"):
        load_config(tmp_path / "nope.toml")


def test_an_overflowing_duration_is_a_configuration_error_not_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, FULL.replace('"5s"', '"99999999999999d"', 1))
    assert agent_main.main(["-c", str(path), "status"]) == agent_main.EXIT_CONFIG
    error = capsys.readouterr().err
    assert error.strip() == (f"fleetpki-agent: {path}: server.connect_timeout: duration "
                             "'99999999999999d' is longer than 73000 days")


def test_a_fifo_as_the_configuration_file_is_refused_without_blocking(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A FIFO nobody writes to: opening it for reading the ordinary way never returns.
    path = tmp_path / "agent.toml"
    os.mkfifo(path)
    codes: list[int] = []
    reader = threading.Thread(target=lambda: codes.append(
        agent_main.main(["-c", str(path), "status"])), daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # the old behaviour: unblock the reader, then fail
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=10)
        pytest.fail("reading a FIFO as the configuration file blocked")
    assert codes == [agent_main.EXIT_CONFIG]
    assert capsys.readouterr().err.strip() == (
        f"fleetpki-agent: {path}: is a FIFO, not a regular file; point --config (or "
        "FLEETPKI_AGENT_CONFIG) at the configuration file itself")


def test_a_directory_as_the_configuration_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AgentConfigError, match="is a directory, not a regular file; point "
                                               "--config"):
        load_config(tmp_path)

"""Profiles are validated at load: the error names the file, the profile and the field."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from fleetpki.core.errors import ConfigError
from fleetpki.profiles_loader import load_profiles

DEFAULTS = resources.files("fleetpki.defaults").joinpath("profiles.toml").read_text()

MINIMAL = """
[profiles.p]
issuer = "issuing"
[profiles.p.keys]
allowed = ["ec-p256"]
[profiles.p.validity]
default = "30d"
maximum = "60d"
[profiles.p.subject.attributes.CN]
required = true
[profiles.p.extensions]
key_usage = ["digitalSignature"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profiles.toml"
    path.write_text(text)
    return path


def test_default_profiles_load(tmp_path: Path) -> None:
    profiles = load_profiles(write(tmp_path, DEFAULTS), known_issuers={"issuing"})
    assert set(profiles) == {"sensor", "gateway", "edge"}
    assert profiles["sensor"].validity.maximum.days == 398


def test_profiles_saved_with_a_byte_order_mark_load(tmp_path: Path) -> None:
    # Windows editors may start a UTF-8 file with U+FEFF; tomllib alone refuses it.
    path = tmp_path / "profiles.toml"
    path.write_bytes(b"\xef\xbb\xbf" + DEFAULTS.encode())
    assert set(load_profiles(path, known_issuers={"issuing"})) == {"sensor", "gateway", "edge"}


def test_minimal_profile_loads(tmp_path: Path) -> None:
    assert load_profiles(write(tmp_path, MINIMAL))["p"].issuer == "issuing"


@pytest.mark.parametrize(("change", "field", "message"), [
    (("maximum = \"60d\"", "maximun = \"60d\""), "validity.maximun", "unknown key"),
    (("maximum = \"60d\"", "maximum = \"10d\""), "validity.maximum", "not be shorter"),
    (("default = \"30d\"", "default = \"30 days\""), "validity.default", "duration"),
    (("allowed = [\"ec-p256\"]", "allowed = [\"dsa-1024\"]"), "keys.allowed", "unknown key"),
    (("allowed = [\"ec-p256\"]", "allowed = []"), "keys.allowed", "at least one"),
    (("key_usage = [\"digitalSignature\"]", "key_usage = [\"keyCertSign\"]"),
     "extensions.key_usage", "sub-ca"),
    (("required = true", "required = \"yes\""), "subject.attributes.CN.required",
     "true or false"),
    (("required = true", "required = true\npattern = \"([\""), "subject.attributes.CN.pattern",
     "regular expression"),
    (("issuer = \"issuing\"", "issuer = 7"), "issuer", "must be a string"),
])
def test_invalid_profile_names_file_profile_and_field(tmp_path: Path, change: tuple[str, str],
                                                      field: str, message: str) -> None:
    path = write(tmp_path, MINIMAL.replace(*change))
    with pytest.raises(ConfigError) as info:
        load_profiles(path)
    text = str(info.value)
    assert str(path) in text
    assert "profile 'p'" in text
    assert f"field '{field}'" in text
    assert message in text


def test_profile_naming_missing_ca_refuses(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"issuing CA 'issuing', which does not exist"):
        load_profiles(write(tmp_path, MINIMAL), known_issuers={"other"})


def test_profile_naming_a_root_ca_refuses(tmp_path: Path) -> None:
    """A root signs CAs only (it is kept offline); the message lists the issuing CAs."""
    with pytest.raises(ConfigError, match=r"names the root CA 'issuing'.*available: sub-1"):
        load_profiles(write(tmp_path, MINIMAL), known_issuers={"issuing", "sub-1"},
                      root_cas=frozenset({"issuing"}))
    sub_ca = (MINIMAL.replace('issuer = "issuing"', 'issuer = "issuing"\nkind = "sub-ca"')
              .replace('["digitalSignature"]', '["keyCertSign", "cRLSign"]'))
    assert load_profiles(write(tmp_path, sub_ca), known_issuers={"issuing"},
                         root_cas=frozenset({"issuing"}))["p"].issuer == "issuing"


def test_broken_toml_refuses_with_position(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_profiles(write(tmp_path, MINIMAL + "\n[profiles.p\n"))


def test_missing_file_refuses(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_profiles(tmp_path / "nope.toml")


def test_unknown_top_level_table_refuses(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        load_profiles(write(tmp_path, MINIMAL + "\n[profile.q]\nissuer = \"x\"\n"))

"""The [profiles.X.revocation] table and the revocation pointers derived from [revocation]
base_url: what loads, what each setting puts in the profile, and what refuses to start."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from tests.unit.test_profiles_loader import MINIMAL, write

from fleetpki.core.errors import ConfigError
from fleetpki.core.revocation_policy import RevocationPolicy
from fleetpki.profiles_loader import Publication, load_profiles

BASE = "http://pki.fleet.example:8080"
PUBLISHED = Publication(base_url=BASE)


def load(tmp_path: Path, extra: str = "", publication: Publication = PUBLISHED,
         text: str = MINIMAL) -> RevocationPolicy:
    return load_profiles(write(tmp_path, text + extra), publication=publication)["p"].revocation


def urls(tmp_path: Path, extra: str = "", publication: Publication = PUBLISHED
         ) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    profile = load_profiles(write(tmp_path, MINIMAL + extra), publication=publication)["p"]
    return (profile.urls.crl_distribution_points, profile.urls.freshest_crl, profile.urls.ocsp)


def test_without_a_table_the_complete_crl_and_ocsp_are_derived(tmp_path: Path) -> None:
    assert load(tmp_path) == RevocationPolicy()
    assert urls(tmp_path) == ((f"{BASE}/crl/issuing.crl",), (), (f"{BASE}/ocsp",))


def test_without_a_base_url_a_profile_carries_only_what_it_states(tmp_path: Path) -> None:
    assert urls(tmp_path, publication=Publication()) == ((), (), ())
    explicit = '[profiles.p.urls]\ncrl = ["http://cdn.example/i.crl"]\n'
    assert urls(tmp_path, explicit, Publication())[0] == ("http://cdn.example/i.crl",)


def test_shards_and_deltas_derive_per_shard_url_templates(tmp_path: Path) -> None:
    extra = "[profiles.p.revocation]\ncrl_shards = 64\ndelta_crl = true\n"
    assert load(tmp_path, extra) == RevocationPolicy(crl_shards=64, delta_crl=True)
    assert urls(tmp_path, extra)[:2] == ((f"{BASE}/crl/issuing/p-{{shard}}.crl",),
                                         (f"{BASE}/crl/issuing/p-{{shard}}-delta.crl",))


def test_short_lived_profiles_carry_no_pointers(tmp_path: Path) -> None:
    text = MINIMAL.replace('"30d"', '"1d"').replace('"60d"', '"7d"')
    extra = "[profiles.p.revocation]\nshort_lived = true\n"
    assert load(tmp_path, extra, text=text).short_lived
    profile = load_profiles(write(tmp_path, text + extra), publication=PUBLISHED)["p"]
    assert (profile.urls.crl_distribution_points, profile.urls.ocsp) == ((), ())


@pytest.mark.parametrize(("extra", "field", "message"), [
    ("[profiles.p.revocation]\ncrl_shards = 0\n", "revocation.crl_shards", "between 1 and 4096"),
    ("[profiles.p.revocation]\ncrl_shards = 5000\n", "revocation.crl_shards", "not 5000"),
    ("[profiles.p.revocation]\nshards = 4\n", "revocation.shards", "unknown key"),
    ("[profiles.p.revocation]\nshort_lived = true\n", "revocation.short_lived",
     "validity.maximum must be at most 7d"),
    ("[profiles.p.revocation]\ncrl_shards = 4\n[profiles.p.urls]\ncrl = [\"http://x/a.crl\"]\n",
     "urls.crl", "{shard}"),
    ("[profiles.p.urls]\ndelta_crl = [\"http://x/d.crl\"]\n", "urls.delta_crl",
     "delta_crl = true"),
    ("[profiles.p.urls]\nocsp = [\"ftp://x/ocsp\"]\n", "urls.ocsp", "not an http"),
])
def test_impossible_revocation_settings_refuse_to_load(tmp_path: Path, extra: str, field: str,
                                                       message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, extra)
    assert f"field '{field}'" in str(info.value)
    assert message in str(info.value)


def test_sharding_without_any_url_source_refuses(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="base_url"):
        load(tmp_path, "[profiles.p.revocation]\ncrl_shards = 4\n", Publication())


def test_short_lived_bound_follows_the_setting(tmp_path: Path) -> None:
    extra = "[profiles.p.revocation]\nshort_lived = true\n"
    assert load(tmp_path, extra, Publication(BASE, dt.timedelta(days=60))).short_lived
    with pytest.raises(ConfigError, match="has no effect"):
        load(tmp_path, extra + "delta_crl = true\n", Publication(BASE, dt.timedelta(days=60)))

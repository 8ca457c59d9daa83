"""Settings of `fleetpki serve`: defaults, and refusals that name the file and the field."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from fleetpki.config import load_settings
from fleetpki.core.errors import ConfigError
from fleetpki.ra.rate_limits import RateLimit, RateLimiter


def settings_with(tmp_path: Path, text: str) -> Path:
    (tmp_path / "fleetpki.toml").write_text(text)
    return tmp_path


def test_defaults_serve_on_loopback_with_limits(tmp_path: Path) -> None:
    settings = load_settings(tmp_path)
    assert str(settings.server.listen) == "127.0.0.1:8443"
    assert settings.server.workers == 2 and settings.server.proxy_listen is None
    assert settings.est.per_credential == RateLimit(600, dt.timedelta(minutes=1))
    assert settings.est.default_profile is None


def test_proxy_and_limits_are_read(tmp_path: Path) -> None:
    settings = load_settings(settings_with(tmp_path, """
[server]
listen = "[::1]:9443"
hostnames = ["est.example.com"]
[server.proxy]
listen = "127.0.0.1:8080"
trusted = ["10.0.0.0/8", "127.0.0.1"]
[est.rate_limits]
per_credential = "off"
per_address = "20/s"
"""))
    assert str(settings.server.listen) == "[::1]:9443"
    assert str(settings.server.proxy_listen) == "127.0.0.1:8080"
    assert len(settings.server.trusted_proxies) == 2
    assert settings.est.per_credential is None
    assert settings.est.per_address == RateLimit(20, dt.timedelta(seconds=1))


@pytest.mark.parametrize(("text", "field", "says"), [
    ('[server]\nlisten = "8443"', "server.listen", "HOST:PORT"),
    ('[server]\nworkers = 0', "server.workers", ""),
    ('[server.proxy]\nlisten = "127.0.0.1:8080"', "server.proxy.trusted", "must list"),
    ('[server.proxy]\nlisten = "127.0.0.1:8080"\ntrusted = ["nope"]', "server.proxy.trusted",
     "not an IP"),
    ('[est.rate_limits]\nper_address = "lots"', "est.rate_limits.per_address", "600/min"),
    ('[est]\ndefault_profil = "x"', "est.default_profil", "unknown"),
])
def test_bad_server_settings_refuse_to_start(tmp_path: Path, text: str, field: str,
                                             says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(settings_with(tmp_path, text))
    message = str(refused.value)
    assert "fleetpki.toml" in message and field in message and says in message


def test_token_bucket_allows_bursts_then_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(RateLimit(3, dt.timedelta(seconds=3)), clock=lambda: now[0])
    assert [limiter.take("k") for _ in range(3)] == [None, None, None]
    assert limiter.take("k") == 1
    assert limiter.take("other") is None  # keys are independent
    now[0] += 1.0
    assert limiter.take("k") is None
    assert limiter.take("k") == 1


def test_token_bucket_memory_is_bounded() -> None:
    limiter = RateLimiter(RateLimit(1, dt.timedelta(seconds=60)), max_keys=10)
    for n in range(100):
        limiter.take(f"address-{n}")
    assert len(limiter._buckets) == 10

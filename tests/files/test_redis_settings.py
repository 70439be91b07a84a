"""REDIS_URL and REDIS_TIMEOUT_SECONDS: checked at start-up, one line naming the file or
variable and the key, never repeating a password; unset means no Redis at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from auth_service.errors import ConfigError
from auth_service.files.settings import load_settings


def settings_with(config_dir: Path, **environ: str):
    return load_settings(config_dir, environ={f"AUTH_SERVICE_{k}": v for k, v in environ.items()})


def test_without_redis_url_nothing_is_shared(config_dir: Path) -> None:
    settings = load_settings(config_dir, environ={})
    assert (settings.redis_url, settings.redis_timeout) == ("", 0.25)


@pytest.mark.parametrize(
    "url",
    [
        "redis://redis.internal:6379/0",
        "redis://:pw@10.0.0.5",
        "rediss://user:pw@redis.example.org:6380/2",
        "unix:///run/redis/redis.sock",
        "unix:///run/redis/redis.sock?db=3",
    ],
)
def test_redis_urls_of_the_three_schemes_are_accepted(config_dir: Path, url: str) -> None:
    assert settings_with(config_dir, REDIS_URL=url).redis_url == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://:s3cret@redis.internal:6379", "must be a redis://, rediss:// or unix:// URL"),
        ("s3cret@redis.internal:6379", "must be a redis://, rediss:// or unix:// URL"),
        ("redis://:s3cret@redis.internal:port", "is not a URL"),
        ("redis:///0", "must name a host"),
        ("unix://relative.sock", "absolute path"),
        ("redis://:s3cret@redis.internal/0?db=one", "Invalid value for 'db'"),
    ],
)
def test_a_bad_redis_url_stops_start_up_naming_the_key_not_the_password(
    config_dir: Path, url: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as from_env:
        settings_with(config_dir, REDIS_URL=url)
    assert from_env.value.source == "environment AUTH_SERVICE_REDIS_URL"
    assert problem in str(from_env.value)
    assert "s3cret" not in str(from_env.value) and "\n" not in str(from_env.value)
    with open(config_dir / "config.py", "a", encoding="utf-8") as config:
        config.write(f"REDIS_URL = {url!r}\n")
    with pytest.raises(ConfigError) as from_file:
        load_settings(config_dir, environ={})
    assert (from_file.value.source, from_file.value.key) == (
        str(config_dir / "config.py"),
        "REDIS_URL",
    )


@pytest.mark.parametrize(("given", "seconds"), [("0.05", 0.05), ("1", 1.0), ("10", 10.0)])
def test_the_timeout_is_seconds_from_a_hundredth_to_ten(
    config_dir: Path, given: str, seconds: float
) -> None:
    assert settings_with(config_dir, REDIS_TIMEOUT_SECONDS=given).redis_timeout == seconds


@pytest.mark.parametrize("given", ["0", "11", "-1", "soon", "true"])
def test_a_bad_timeout_stops_start_up(config_dir: Path, given: str) -> None:
    with pytest.raises(ConfigError, match="REDIS_TIMEOUT_SECONDS.*seconds from 0.01 to 10"):
        settings_with(config_dir, REDIS_TIMEOUT_SECONDS=given)


def test_the_url_is_kept_out_of_the_settings_repr(config_dir: Path) -> None:
    settings = settings_with(config_dir, REDIS_URL="redis://:s3cret@redis.internal")
    assert "s3cret" not in repr(settings)

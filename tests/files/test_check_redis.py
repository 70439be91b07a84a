"""``config check`` with REDIS_URL: a Redis that doesn't answer is a warning (the service
starts anyway, and falls back), and the warning never shows the password."""

from __future__ import annotations

from pathlib import Path

from ..redis_server import RedisServer
from .test_check import check


def with_redis_url(config_dir: Path, url: str) -> Path:
    with open(config_dir / "config.py", "a", encoding="utf-8") as config:
        config.write(f"REDIS_URL = {url!r}\n")
    return config_dir


def test_a_reachable_redis_adds_no_finding(config_dir: Path, redis_server: RedisServer) -> None:
    _, without = check(config_dir)
    _, with_redis = check(with_redis_url(config_dir, redis_server.url))
    assert with_redis == without


def test_an_unreachable_redis_is_a_warning_without_its_password(
    config_dir: Path, redis_server: RedisServer
) -> None:
    _, without = check(config_dir)
    with_redis_url(config_dir, f"redis://:s3cret@127.0.0.1:{redis_server.port}/0")
    redis_server.stop()
    _, lines = check(config_dir)
    (added,) = [line for line in lines if line not in without]
    assert added.startswith("warning: REDIS_URL: Redis at redis://:***@127.0.0.1:"), added
    assert "s3cret" not in "\n".join(lines)

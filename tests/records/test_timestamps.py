"""RFC 3339 formatting, which keeps the formatted second between calls."""

import datetime as dt

from auth_service.records.timestamps import rfc3339_millis, rfc3339_seconds


def test_seconds_match_the_datetime_formatting():
    for epoch in (0, 1_700_000_000, 1_700_000_001, 1_700_000_000):
        expected = dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert rfc3339_seconds(epoch) == expected


def test_millis_follow_the_second_they_are_in():
    assert rfc3339_millis(1_700_000_000.0) == "2023-11-14T22:13:20.000Z"
    assert rfc3339_millis(1_700_000_000.5) == "2023-11-14T22:13:20.500Z"
    assert rfc3339_millis(1_700_000_001.999) == "2023-11-14T22:13:21.999Z"
    assert rfc3339_millis(1_700_000_000.042) == "2023-11-14T22:13:20.042Z"

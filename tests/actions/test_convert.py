"""Row → proto conversion: timestamps written in integers equal protobuf's FromDatetime."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

from services.actions.convert import _set_time


@given(st.datetimes(min_value=datetime(1, 1, 1), timezones=st.sampled_from([None, UTC])))
def test_set_time_equals_from_datetime(value: datetime) -> None:
    expected, got = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    expected.FromDatetime(value)
    _set_time(got, value)
    assert got == expected

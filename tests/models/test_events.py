"""Field parsers of the input contract: any value gives a result or an EventValueError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.events import EventValueError, amount_to_cents, parse_severity, parse_ts

anything = st.one_of(
    st.text(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "²", "٣", "9999-12-31T23:59:59+00:00", "0"]),
)


@settings(max_examples=500, deadline=None)
@given(value=anything)
@pytest.mark.parametrize("parser", [parse_ts, amount_to_cents, parse_severity])
def test_parsers_raise_only_their_own_error(parser, value) -> None:
    try:
        parser(value)
    except EventValueError as exc:
        assert exc.reason.startswith(("bad_", "ts_"))


@pytest.mark.parametrize(
    ("value", "reason"),
    [("nan", "bad_severity"), ("1e999", "bad_severity"), (float("nan"), "bad_severity")],
)
def test_non_finite_severity_is_a_bad_severity(value, reason) -> None:
    with pytest.raises(EventValueError) as info:
        parse_severity(value)
    assert info.value.reason == reason


def test_only_ascii_digits_are_epoch_milliseconds() -> None:
    with pytest.raises(EventValueError) as info:
        parse_ts("²")
    assert info.value.reason == "bad_ts"
    assert parse_ts("852076800000") == 852076800


def test_complaint_categories_are_read_and_checked(tmp_path) -> None:
    """The optional ``category`` column: kept per complaint (for replay), empty = none, a
    category outside the contract is a bad row."""
    from models.events import read_event_csv

    path = tmp_path / "events.csv"
    path.write_text(
        "event_id,type,customer_id,ts,amount,severity,category\n"
        "c1,complaint,ann,1997-01-02T00:00:00Z,,3,delivery\n"
        "p1,purchase,ann,1997-01-01T00:00:00Z,10.00,,\n"
        "c2,complaint,bob,1997-01-03T00:00:00Z,,2,\n"
        "c3,complaint,bob,1997-01-04T00:00:00Z,,2,weather\n",
        encoding="utf-8",
    )
    log = read_event_csv(path)
    assert [line for line, _ in log.bad_rows] == [5]
    assert "bad_category" in log.bad_rows[0][1]
    assert log.event_ids == ["p1", "c1", "c2"]  # event-time order
    assert log.categories == {1: "delivery"}

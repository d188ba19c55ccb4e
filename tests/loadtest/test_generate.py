"""The synthetic generator: parameter recovery through `custscore fit`, order, rates, streaming."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from custscore.commands.fit import fit_input
from engine.state import KIND_COMPLAINT, KIND_PURCHASE, KIND_VISIT
from loadtest.generate import StreamSpec, encode_slice, generate, main, write_csv
from models.bgnbd import bgnbd_loglik
from models.events import read_event_csv
from models.gamma_gamma import gamma_gamma_loglik
from models.params_file import default_params, load_params


def _log_se(loglik, theta: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Standard errors of log-parameters from the observed information (numeric Hessian)."""
    u0 = np.log(theta)
    k = u0.shape[0]
    h = 1e-3
    f = lambda u: loglik(np.exp(u))  # noqa: E731
    hess = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            ei = np.eye(k)[i] * h
            ej = np.eye(k)[j] * h
            hess[i, j] = (f(u0 + ei + ej) - f(u0 + ei - ej) - f(u0 - ei + ej) + f(u0 - ei - ej)) / (
                4 * h * h
            )
    cov = np.linalg.inv(-hess)
    return np.sqrt(np.diag(cov))


def test_fit_recovers_generating_parameters(tmp_path: Path) -> None:
    """`custscore fit` on 20,000 generated customers recovers r, alpha, a, b, p, q, v.

    Tolerance: 4 standard errors of each log-parameter (observed information at the fit),
    i.e. what this sample size can resolve; a systematic bias of the generator shows as a
    miss far outside that (the errors here are ~2-8 %, 4 SE is ~10-40 %).
    """
    truth = default_params().scoring
    spec = StreamSpec.from_params(default_params(), 20_000, seed=7)
    events = tmp_path / "events.csv"
    with events.open("w", encoding="utf-8", newline="") as fh:
        stats = write_csv(spec, fh)
    assert stats.purchases == stats.events > 20_000
    out = tmp_path / "fitted.json"
    fit_input(events, out, time_unit="weeks", kind="events")
    fitted = load_params(out).scoring

    from engine.segments import DEFAULT_RFM_MAP
    from models.calibrate import summarize_log

    h = summarize_log(read_event_csv(events), fitted, DEFAULT_RFM_MAP)
    bg = np.array([fitted.r, fitted.alpha, fitted.a, fitted.b])
    se_bg = _log_se(lambda t: bgnbd_loglik(*t, h.frequency, h.recency, h.T), bg)
    rep = (h.frequency > 0) & (h.monetary_value > 0)
    gg = np.array([fitted.p, fitted.q, fitted.v])
    se_gg = _log_se(lambda t: gamma_gamma_loglik(*t, h.frequency[rep], h.monetary_value[rep]), gg)
    true_bg = np.array([truth.r, truth.alpha, truth.a, truth.b])
    true_gg = np.array([truth.p, truth.q, truth.v])
    z_bg = np.abs(np.log(bg / true_bg)) / se_bg
    z_gg = np.abs(np.log(gg / true_gg)) / se_gg
    assert np.all(z_bg < 4), (bg, true_bg, se_bg, z_bg)
    assert np.all(z_gg < 4), (gg, true_gg, se_gg, z_gg)
    # and the absolute errors are small at this size
    assert np.all(np.abs(bg / true_bg - 1) < 0.25)
    assert np.all(np.abs(gg / true_gg - 1) < 0.5)


def test_stream_is_ordered_seeded_and_unique(tmp_path: Path) -> None:
    spec = StreamSpec(customers=3000, seed=3, visit_rate=0.5, complaint_rate=0.05)
    slices = list(generate(spec))
    ts = np.concatenate([s.ts_ms for s in slices])
    assert np.all(np.diff(ts) >= 0)
    assert ts[0] >= spec.start * 1000 and ts[-1] < spec.end_ts * 1000
    again = np.concatenate([s.ts_ms for s in generate(spec)])
    assert np.array_equal(ts, again)
    other = np.concatenate([s.ts_ms for s in generate(StreamSpec(3000, seed=4, visit_rate=0.5))])
    assert not np.array_equal(ts[:100], other[:100])
    # streaming: no slice holds more than a small share of the stream (one day of events)
    assert max(len(s) for s in slices) < 0.02 * ts.shape[0]
    # every customer starts with a purchase; nothing of theirs comes before it
    first_kind: dict[int, int] = {}
    for s in slices:
        for k, c in zip(s.kind.tolist(), s.customer.tolist(), strict=True):
            first_kind.setdefault(c, k)
    assert set(first_kind.values()) == {KIND_PURCHASE}
    # the CSV reads back complete and valid
    path = tmp_path / "e.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        stats = write_csv(spec, fh)
    log = read_event_csv(path)
    assert not log.bad_rows and log.events.shape[0] == stats.events == ts.shape[0]
    kinds = log.events["kind"]
    assert int(np.count_nonzero(kinds == KIND_VISIT)) == stats.visits > 0
    assert int(np.count_nonzero(kinds == KIND_COMPLAINT)) == stats.complaints > 0
    sev = log.events["severity"][kinds == KIND_COMPLAINT]
    assert sev.min() >= 1 and sev.max() <= 5


def test_visit_and_complaint_rates() -> None:
    """Without dropout every customer stays active: counts match rate x active time."""
    spec = StreamSpec(
        customers=4000,
        seed=11,
        a=1e-4,
        b=50.0,
        visit_rate=0.4,
        complaint_rate=0.05,
        horizon=20.0,
        acquisition=10.0,
    )
    n = {KIND_PURCHASE: 0, KIND_VISIT: 0, KIND_COMPLAINT: 0}
    for s in generate(spec):
        for kind in n:
            n[kind] += int(np.count_nonzero(s.kind == kind))
    exposure = spec.customers * (spec.horizon - spec.acquisition / 2)
    for kind, rate in ((KIND_VISIT, spec.visit_rate), (KIND_COMPLAINT, spec.complaint_rate)):
        expected = rate * exposure
        # Poisson-gamma mixture: sd well under 3 % of the mean here; allow 5 sd
        assert abs(n[kind] - expected) < 5 * math.sqrt(expected * 3), (kind, n[kind], expected)
    expected_p = spec.customers + spec.r / spec.alpha * exposure
    assert abs(n[KIND_PURCHASE] / expected_p - 1) < 0.1


def test_messages_match_the_input_contract() -> None:
    import json

    from streams.codec import DecodedEvent, EventDecoder

    spec = StreamSpec(customers=200, seed=1, visit_rate=1.0, complaint_rate=0.2)
    decoder = EventDecoder(
        {"p": "purchase", "v": "visit", "c": "complaint"},
        max_payload_bytes=65536,
        max_future_skew_s=86400,
    )
    topic = {KIND_PURCHASE: "p", KIND_VISIT: "v", KIND_COMPLAINT: "c"}
    seen = set()
    for s in generate(spec):
        for kind, eid, key, value in encode_slice(spec, s):
            body = json.loads(value)
            assert body["event_id"] == eid and body["customer_id"].encode() == key
            decoded = decoder.decode(topic[kind], key, value, 2e9)
            assert isinstance(decoded, DecodedEvent), decoded
            assert decoded.kind == kind
            seen.add(kind)
    assert seen == {KIND_PURCHASE, KIND_VISIT, KIND_COMPLAINT}


def test_cli_writes_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "g.csv"
    assert main(["--customers", "500", "--visit-rate", "0.2", "--out", str(out)]) == 0
    assert "generated" in capsys.readouterr().err
    log = read_event_csv(out)
    assert log.events.shape[0] > 500 and not log.bad_rows
    assert main(["--customers", "0", "--out", str(out)]) == 2

"""The params JSON file: fitted BG/NBD + Gamma-Gamma parameters, cut points, policy, a version.

Layout (``schema`` ``custscore.params/1``)::

    {"schema": "custscore.params/1",
     "model_version": "<12 hex>",
     "time_unit": "days" | "weeks",
     "bgnbd": {"r", "alpha", "a", "b"},
     "gamma_gamma": {"p", "q", "v"},
     "thresholds": {...calibrated cut points of engine.scoring_params.ScoringParams...},
     "policy": {...the remaining ScoringParams fields (policy knobs)...},
     "fit": {"source", "n_customers", "n_repeat", "loglik", "seconds", "fitted_at", ...}}

``model_version`` is the first 12 hex digits of the SHA-256 of the canonical JSON (sorted keys,
no spaces) of everything except ``model_version`` and ``fit``, after each value is normalised to
its field's type; so it changes when any parameter changes, not when the file is re-formatted.
A file whose version does not match its contents has been edited by hand and is rejected.

The threshold and policy field lists are derived from ``ScoringParams._fields``: the fields
after the model parameters up to the first ``int``-typed one (``window_months``) are thresholds,
the rest policy (unless engine.scoring_params defines ``THRESHOLD_FIELDS``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import engine.scoring_params as engine_params
from engine.scoring_params import ScoringParams, default_scoring_params

__all__ = [
    "BGNBD_FIELDS",
    "GAMMA_GAMMA_FIELDS",
    "POLICY_FIELDS",
    "SCHEMA",
    "THRESHOLD_FIELDS",
    "TIME_UNITS",
    "ParamsError",
    "ParamsFile",
    "default_params",
    "from_scoring_params",
    "load_params",
    "model_version",
    "parse_params",
    "save_params",
    "to_scoring_params",
]

SCHEMA = "custscore.params/1"
TIME_UNITS: dict[str, float] = {"days": 86_400.0, "weeks": 604_800.0}
BGNBD_FIELDS = ("r", "alpha", "a", "b")
GAMMA_GAMMA_FIELDS = ("p", "q", "v")
_MODEL_FIELDS = ("unit_seconds", *BGNBD_FIELDS, *GAMMA_GAMMA_FIELDS)
_TOP_KEYS = (
    "schema",
    "model_version",
    "time_unit",
    "bgnbd",
    "gamma_gamma",
    "thresholds",
    "policy",
    "fit",
)
_SECTIONS = ("bgnbd", "gamma_gamma", "thresholds", "policy")
_DEFAULT_FILE = "default_params.json"


class ParamsError(ValueError):
    """A params file or object that cannot be used; the message is one line."""


def _field_types() -> dict[str, type]:
    hints = typing.get_type_hints(ScoringParams)
    return {name: (int if hints.get(name) is int else float) for name in ScoringParams._fields}


_TYPES = _field_types()


def _split_fields() -> tuple[tuple[str, ...], tuple[str, ...]]:
    missing = [f for f in _MODEL_FIELDS if f not in ScoringParams._fields]
    if missing:  # pragma: no cover - guards against an engine change
        raise RuntimeError(f"engine.scoring_params.ScoringParams lacks {missing}")
    rest = tuple(f for f in ScoringParams._fields if f not in _MODEL_FIELDS)
    explicit = getattr(engine_params, "THRESHOLD_FIELDS", None)
    if explicit is not None:
        thresholds = tuple(f for f in rest if f in explicit)
    else:
        first_int = next((i for i, f in enumerate(rest) if _TYPES[f] is int), len(rest))
        thresholds = rest[:first_int]
    return thresholds, tuple(f for f in rest if f not in thresholds)


THRESHOLD_FIELDS, POLICY_FIELDS = _split_fields()
_SECTION_FIELDS: dict[str, tuple[str, ...]] = {
    "bgnbd": BGNBD_FIELDS,
    "gamma_gamma": GAMMA_GAMMA_FIELDS,
    "thresholds": THRESHOLD_FIELDS,
    "policy": POLICY_FIELDS,
}


@dataclass(frozen=True)
class ParamsFile:
    """A validated params file: the engine's :class:`ScoringParams`, its version, fit metadata."""

    scoring: ScoringParams
    model_version: str
    fit: Mapping[str, Any] = field(default_factory=dict)

    @property
    def time_unit(self) -> str:
        """``"days"`` or ``"weeks"``."""
        return _unit_name(self.scoring.unit_seconds)

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to disk (key order as documented)."""
        obj = _content(self.scoring)
        out: dict[str, Any] = {"schema": SCHEMA, "model_version": self.model_version}
        out.update((k, v) for k, v in obj.items() if k != "schema")
        out["fit"] = dict(self.fit)
        return out


def _unit_name(unit_seconds: float) -> str:
    for name, seconds in TIME_UNITS.items():
        if unit_seconds == seconds:
            return name
    raise ParamsError(
        f"unit_seconds {unit_seconds:g} is not a supported time unit (days = 86400, weeks = 604800)"
    )


def _normalise(name: str, value: Any) -> int | float:
    if _TYPES[name] is int:
        return int(value)
    return float(value)


def _content(scoring: ScoringParams) -> dict[str, Any]:
    """Everything that the version covers, values normalised to their field types."""
    values = scoring._asdict()
    obj: dict[str, Any] = {"schema": SCHEMA, "time_unit": _unit_name(float(scoring.unit_seconds))}
    for section, names in _SECTION_FIELDS.items():
        obj[section] = {n: _normalise(n, values[n]) for n in names}
    return obj


def _version_of(content: Mapping[str, Any]) -> str:
    canonical = json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def model_version(scoring: ScoringParams) -> str:
    """The 12-hex-digit version of these parameters (see the module docstring)."""
    return _version_of(_content(scoring))


def _check_model_values(scoring: ScoringParams, where: str) -> None:
    for name in (*BGNBD_FIELDS, *GAMMA_GAMMA_FIELDS):
        value = getattr(scoring, name)
        section = "bgnbd" if name in BGNBD_FIELDS else "gamma_gamma"
        if not (math.isfinite(value) and value > 0):
            raise ParamsError(f"{where}: {section}.{name} must be a positive number, got {value!r}")
    if scoring.q <= 1.0:
        raise ParamsError(
            f"{where}: gamma_gamma.q must be > 1 (the population mean spend p*v/(q-1) is "
            f"infinite otherwise), got {scoring.q!r}"
        )
    _check_policy(scoring, where)


# (field, lowest allowed, highest allowed, lowest is inclusive) for the policy knobs whose
# out-of-range values would crash or silently mislead the kernels.
_POLICY_RANGES: tuple[tuple[str, float, float, bool], ...] = (
    ("window_months", 1, 12, True),  # the ring holds 12 calendar months
    ("at_risk_ratio", 0, math.inf, False),
    ("at_risk_p_alive", 0, 1, True),
    ("clv_horizon_days", 0, math.inf, False),
    ("clv_annual_discount", 0, math.inf, True),
    ("risk_threshold", 0, 1, False),
    ("risk_hysteresis", 0, 1, True),
    ("complaint_halflife_days", 0, math.inf, False),
    ("complaint_weight", 0, math.inf, True),
    ("unresolved_weight", 0, math.inf, True),
    ("visit_weight", 0, math.inf, True),
    ("intent_window_days", 0, math.inf, True),
    ("adjust_max_up", 0, math.inf, True),
    ("adjust_max_down", 0, math.inf, True),
    ("complaint_alert_severity", 1, 6, True),  # 6 = never
    ("cooldown_min_days", 0, math.inf, True),
    ("class_hysteresis", 0, 1, True),
    ("mean_gap_days", 0, math.inf, False),
    ("effective_min_spend", 0, math.inf, True),
    ("nudge_lead_days", 0, math.inf, True),
    ("nudge_min_days", 2, 128, True),  # a rhythm needs one gap; days are remembered to 128
    ("nudge_min_p_alive", 0, 1, True),
    ("nudge_min_tier", 0, 4, True),
    ("response_window_days", 0, 3650, False),
    ("spend_drop_ratio", 0, 1, False),
    ("spend_drop_min_months", 1, 8, True),  # the earlier window is eight months
    ("tier_share_vip", 0, 1, False),
    ("tier_share_major", 0, 1, False),
    ("tier_share_normal", 0, 1, False),
    ("abcd_share_a", 0, 1, False),
    ("abcd_share_b", 0, 1, False),
    ("abcd_share_c", 0, 1, False),
    ("pareto_top_share", 0, 1, False),
)


def _check_policy(scoring: ScoringParams, where: str) -> None:
    for name, low, high, inclusive in _POLICY_RANGES:
        value = getattr(scoring, name)
        if value > high or value < low or (value == low and not inclusive):
            bracket = "[" if inclusive else "("
            raise ParamsError(f"{where}: {name} must be in {bracket}{low}, {high}], got {value!r}")
    if scoring.lost_months < scoring.window_months:
        raise ParamsError(
            f"{where}: lost_months must be >= window_months ({scoring.window_months})"
        )
    if scoring.cooldown_max_days < scoring.cooldown_min_days:
        raise ParamsError(f"{where}: cooldown_max_days must be >= cooldown_min_days")
    if not scoring.tier_share_vip < scoring.tier_share_major < scoring.tier_share_normal:
        raise ParamsError(f"{where}: tier shares must increase: vip < major < normal")
    if not scoring.abcd_share_a < scoring.abcd_share_b < scoring.abcd_share_c:
        raise ParamsError(f"{where}: A/B/C/D shares must increase: a < b < c")
    if scoring.risk_hysteresis >= scoring.risk_threshold:
        raise ParamsError(f"{where}: risk_hysteresis must be below risk_threshold")


def from_scoring_params(scoring: ScoringParams, fit: Mapping[str, Any] | None = None) -> ParamsFile:
    """A :class:`ParamsFile` for ``scoring`` with its version computed; validates the values."""
    _unit_name(float(scoring.unit_seconds))
    for name in ScoringParams._fields:
        value = getattr(scoring, name)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ParamsError(f"scoring params: {name} must be a finite number, got {value!r}")
    _check_model_values(scoring, "scoring params")
    values = {n: _normalise(n, getattr(scoring, n)) for n in ScoringParams._fields}
    normalised = ScoringParams(**values)  # type: ignore[arg-type]
    return ParamsFile(
        scoring=normalised, model_version=model_version(normalised), fit=dict(fit or {})
    )


def to_scoring_params(params: ParamsFile | Mapping[str, Any]) -> ScoringParams:
    """The engine's :class:`ScoringParams` of a params file (object or parsed JSON)."""
    if isinstance(params, ParamsFile):
        return params.scoring
    return parse_params(params).scoring


def _number(where: str, key: str, value: Any, kind: type) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        expected = "an integer" if kind is int else "a number"
        raise ParamsError(f"{where}: {key} must be {expected}, got {json.dumps(value)}")
    if kind is int and not isinstance(value, int):
        if not (math.isfinite(value) and value == math.floor(value)):
            raise ParamsError(f"{where}: {key} must be an integer, got {value!r}")
        return int(value)
    if not math.isfinite(value):
        raise ParamsError(f"{where}: {key} must be finite, got {value!r}")
    return kind(value)  # type: ignore[no-any-return]


def parse_params(obj: Any, source: str = "params") -> ParamsFile:
    """Validate a parsed params JSON object; raises :class:`ParamsError` (one line, names key)."""
    where = source
    if not isinstance(obj, dict):
        raise ParamsError(f"{where}: expected a JSON object at the top level")
    unknown = sorted(set(obj) - set(_TOP_KEYS))
    if unknown:
        raise ParamsError(f"{where}: unknown key {unknown[0]!r}")
    for key in ("schema", "model_version", "time_unit", *_SECTIONS):
        if key not in obj:
            raise ParamsError(f"{where}: missing key {key!r}")
    if obj["schema"] != SCHEMA:
        raise ParamsError(f"{where}: schema is {obj['schema']!r}, expected {SCHEMA!r}")
    unit = obj["time_unit"]
    if not isinstance(unit, str) or unit not in TIME_UNITS:
        raise ParamsError(f"{where}: time_unit must be 'days' or 'weeks', got {json.dumps(unit)}")
    values: dict[str, int | float] = {"unit_seconds": TIME_UNITS[unit]}
    for section, names in _SECTION_FIELDS.items():
        body = obj[section]
        if not isinstance(body, dict):
            raise ParamsError(f"{where}: {section} must be a JSON object")
        extra = sorted(set(body) - set(names))
        if extra:
            raise ParamsError(f"{where}: unknown key {section}.{extra[0]}")
        for name in names:
            if name not in body:
                raise ParamsError(f"{where}: missing key {section}.{name}")
            values[name] = _number(where, f"{section}.{name}", body[name], _TYPES[name])
    fit = obj.get("fit", {})
    if fit is None:
        fit = {}
    if not isinstance(fit, dict):
        raise ParamsError(f"{where}: fit must be a JSON object")
    scoring = ScoringParams(**values)  # type: ignore[arg-type]
    _check_model_values(scoring, where)
    version = obj["model_version"]
    expected = model_version(scoring)
    if not isinstance(version, str):
        raise ParamsError(f"{where}: model_version must be a string")
    if version != expected:
        raise ParamsError(
            f"{where}: model_version {version} does not match the parameters ({expected}): "
            "the file was changed after it was written; refit or save it again"
        )
    return ParamsFile(scoring=scoring, model_version=version, fit=fit)


def load_params(path: str | Path) -> ParamsFile:
    """Read and validate a params JSON file; raises :class:`ParamsError` with one line."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"params file not found: {name}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ParamsError(f"cannot read params file {name}: {exc}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParamsError(
            f"{name}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
        ) from None
    return parse_params(obj, name)


def save_params(
    path: str | Path, params: ParamsFile | ScoringParams, fit: Mapping[str, Any] | None = None
) -> ParamsFile:
    """Write a params file atomically (temp file + rename); returns what was written.

    With a :class:`ScoringParams`, the version is computed and ``fit`` stored as metadata;
    with a :class:`ParamsFile`, ``fit`` (if given) replaces its metadata.
    """
    if isinstance(params, ParamsFile):
        pf = params if fit is None else ParamsFile(params.scoring, params.model_version, dict(fit))
        pf = from_scoring_params(pf.scoring, pf.fit)
    else:
        pf = from_scoring_params(params, fit)
    target = Path(path)
    text = json.dumps(pf.to_json(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise ParamsError(f"cannot write params file {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ParamsError(f"cannot write params file {target}: {exc.strerror or exc}") from None
    return pf


@lru_cache(maxsize=1)
def default_params() -> ParamsFile:
    """The built-in model: ``models/data/default_params.json`` if packaged, else the engine's
    published CDNOW defaults (``engine.scoring_params.default_scoring_params()``)."""
    packaged = resources.files("models").joinpath("data", _DEFAULT_FILE)
    if packaged.is_file():
        with resources.as_file(packaged) as file_path:
            return load_params(file_path)
    return from_scoring_params(default_scoring_params(), {"source": "built-in CDNOW defaults"})

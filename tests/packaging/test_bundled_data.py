"""The CDNOW logs bundled as package data are lifetimes' files, byte for byte (LICENSE-DATA)."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest

from custscore.commands.datasets import find_cdnow

ROOT = Path(__file__).resolve().parents[2]

# SHA-256 and size of lifetimes/datasets/<name> as the RECORD of the Lifetimes 0.11.3 wheel
# lists them (urlsafe base64 there, hex here).
LIFETIMES_RECORD = {
    "CDNOW_master.txt": (
        "eff6889ed364c5199d6eacbbeb7a6d559971df4406ac876f322c373f00a072ef", 1_950_500),
    "CDNOW_sample.txt": (
        "6fae10155c0b0ba363c2c386e30f77990d22328220efd862a5edd1443420d94a", 228_327),
}


@pytest.mark.parametrize("sample", [False, True], ids=["master", "sample"])
def test_bundled_log_is_the_lifetimes_file(sample: bool) -> None:
    bundled = find_cdnow(sample=sample)
    assert bundled.parent.name == "data" and bundled.parent.parent.name == "models"
    name = bundled.name.removesuffix(".gz")
    data = gzip.decompress(bundled.read_bytes())
    digest, size = LIFETIMES_RECORD[name]
    assert (hashlib.sha256(data).hexdigest(), len(data)) == (digest, size)
    lifetimes = pytest.importorskip("lifetimes")  # the dev extra: compare with the wheel itself
    assert data == (Path(lifetimes.__file__).parent / "datasets" / name).read_bytes()


def test_licence_file_states_what_ships() -> None:
    """LICENSE-DATA names each bundled file with its checksum and carries lifetimes' notice."""
    text = (ROOT / "LICENSE-DATA").read_text(encoding="utf-8")
    for name, (digest, _size) in LIFETIMES_RECORD.items():
        assert f"models/data/{name}.gz" in text and digest in text
    assert "Copyright (c) 2015, Cameron Davidson-Pilon" in text
    assert "Lifetimes 0.11.3" in text

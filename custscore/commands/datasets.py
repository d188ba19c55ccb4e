"""``custscore datasets cdnow``: the CDNOW purchase log bundled with custscore as an event CSV.

The CDNOW master log (69,659 purchases of 23,570 customers, 1997-01-01 to 1998-06-30) and its
1/10th sample (6,919 purchases of 2,357 customers) ship inside custscore as gzip package data,
``models/data/CDNOW_master.txt.gz`` and ``CDNOW_sample.txt.gz``: byte-for-byte the files of the
lifetimes 0.11.3 wheel once decompressed (provenance and licence: LICENSE-DATA), so a plain
``pip install custscore`` has them. The log is parsed (whitespace separated: customer id, date
YYYYMMDD, number of CDs, dollar amount; the sample has the sample id after the master id) and
written as the standard event CSV, one purchase per line in file order, event ids
``cdnow-<line number in the source file>``. Rows with amount 0.00 stay purchases of amount 0.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import tempfile
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TextIO

from config.settings import Settings
from custscore.errors import CliError

__all__ = ["EVENT_HEADER", "CdnowStats", "find_cdnow", "register", "write_cdnow_events"]

EVENT_HEADER = ("event_id", "type", "customer_id", "ts", "amount", "severity")
_FILES = {False: "CDNOW_master.txt.gz", True: "CDNOW_sample.txt.gz"}


@dataclass(frozen=True)
class CdnowStats:
    """What :func:`write_cdnow_events` wrote."""

    events: int
    customers: int
    first_day: str  # YYYY-MM-DD
    last_day: str


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    cdnow = sub.add_parser(
        "cdnow",
        help="CDNOW purchase log (bundled with custscore) as an event CSV",
        description="Write the CDNOW purchase log bundled with custscore as a standard event "
        "CSV (69,659 purchases of 23,570 customers, 1997-01-01 to 1998-06-30; --sample: the "
        "1/10th sample of 2,357 customers). Provenance and licence: LICENSE-DATA.",
    )
    cdnow.add_argument("--out", required=True, metavar="FILE", help="event CSV to write")
    cdnow.add_argument("--sample", action="store_true",
                       help="the 1/10th sample (CDNOW_sample.txt) instead of the master log")
    cdnow.set_defaults(handler=_run_cdnow)


def _run_cdnow(args: argparse.Namespace, settings: Settings) -> int:
    source = find_cdnow(sample=args.sample)
    stats = write_cdnow_events(source, Path(args.out))
    print(
        f"wrote {stats.events:,} purchase events of {stats.customers:,} customers "
        f"({stats.first_day} to {stats.last_day}) to {args.out}"
    )
    return 0


def _bundled(filename: str) -> Traversable:
    return resources.files("models").joinpath("data", filename)


def find_cdnow(sample: bool = False) -> Path:
    """Path of the bundled ``models/data/CDNOW_master.txt.gz`` (or the sample's)."""
    filename = _FILES[sample]
    packaged = _bundled(filename)
    # custscore installs as plain files (never zipped), so the resource is a filesystem path
    if isinstance(packaged, Path) and packaged.is_file():
        return packaged
    raise CliError(
        f"models/data/{filename} is missing from this custscore installation: reinstall custscore"
    )


def _open_text(source: Path) -> TextIO:
    if source.suffix == ".gz":
        return gzip.open(source, "rt", encoding="ascii")
    return source.open(encoding="ascii")


def _iso_day(text: str, where: str) -> str:
    if len(text) != 8 or not text.isdigit():
        raise CliError(f"{where}: bad date {text!r} (expected YYYYMMDD)")
    year, month, day = text[:4], text[4:6], text[6:8]
    if not ("01" <= month <= "12" and "01" <= day <= "31"):
        raise CliError(f"{where}: bad date {text!r} (expected YYYYMMDD)")
    return f"{year}-{month}-{day}"


def _amount(text: str, where: str) -> str:
    try:
        float(text)
    except ValueError:
        raise CliError(f"{where}: bad dollar amount {text!r}") from None
    return text


def write_cdnow_events(source: Path, out: Path) -> CdnowStats:
    """Convert a CDNOW log (plain or ``.gz``) to the standard event CSV at ``out`` (atomically);
    returns counts."""
    customers: set[str] = set()
    first = last = ""
    count = 0
    directory = out.parent if str(out.parent) else Path(".")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise CliError(f"cannot write {out}: {exc.strerror or exc}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh, _open_text(source) as src:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(EVENT_HEADER)
            for line_no, line in enumerate(src, start=1):
                fields = line.split()
                if not fields or (line_no == 1 and not fields[0].isdigit()):
                    continue  # blank line or the master log's column header
                where = f"{source.name} line {line_no}"
                if len(fields) == 4:  # master: id, date, CDs, dollars
                    cust, date, amount = fields[0], fields[1], fields[3]
                elif len(fields) == 5:  # sample: master id, sample id, date, CDs, dollars
                    cust, date, amount = fields[0], fields[2], fields[4]
                else:
                    raise CliError(f"{where}: expected 4 or 5 fields, got {len(fields)}")
                day = _iso_day(date, where)
                writer.writerow((f"cdnow-{line_no}", "purchase", cust, f"{day}T00:00:00Z",
                                 _amount(amount, where), ""))
                customers.add(cust)
                first = day if not first or day < first else first
                last = day if day > last else last
                count += 1
        if count == 0:
            raise CliError(f"{source}: no purchases found")
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CliError(f"cannot write {out}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return CdnowStats(events=count, customers=len(customers), first_day=first, last_day=last)

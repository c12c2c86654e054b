"""Append-only per-example records (JSON Lines) that make long runs resumable.

Each line is one JSON object with an integer ``"index"`` (the example's
position in the dataset).  Lines are appended and flushed to disk batch by
batch; a crash can at worst leave one partial last line, which is dropped
(and cut off the file) when the store is reopened.  Re-running skips the
indices already present, so nothing is lost or counted twice.  A header line
(``"header": true``) records the settings; reopening with other settings is an
error rather than a silent mix of two experiments.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..errors import ConfigError

logger = logging.getLogger(__name__)


class RecordStore:
    def __init__(self, path, header: dict | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.header = header or {}
        self.records: dict[int, dict] = {}
        if self.path.exists():
            self._load()
        else:
            self._write_lines([{"header": True, **self.header}])

    def _load(self) -> None:
        raw = self.path.read_bytes()
        good_end, stored_header = 0, None
        for line in raw.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                break
            good_end += len(line)
            if rec.get("header"):
                stored_header = {k: v for k, v in rec.items() if k != "header"}
            else:
                self.records[int(rec["index"])] = rec
        if good_end < len(raw):
            logger.warning("%s: dropping a partial last record (interrupted write)", self.path)
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
        if stored_header is None:
            self._write_lines([{"header": True, **self.header}])
        elif self.header and json.loads(json.dumps(self.header)) != stored_header:
            changed = sorted(k for k in set(stored_header) | set(self.header)
                             if stored_header.get(k) != json.loads(json.dumps(self.header)).get(k))
            raise ConfigError(f"{self.path} was written with different settings ({', '.join(changed)}); "
                              "use another output folder or delete the file to start over")

    def _write_lines(self, objs) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            for obj in objs:
                fh.write(json.dumps(obj, separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def missing(self, indices) -> list[int]:
        return [int(i) for i in indices if int(i) not in self.records]

    def append(self, records: list[dict]) -> None:
        fresh = [r for r in records if int(r["index"]) not in self.records]
        self._write_lines(fresh)
        for r in fresh:
            self.records[int(r["index"])] = r

    def ordered(self, indices=None) -> list[dict]:
        keys = sorted(self.records) if indices is None else [int(i) for i in indices]
        return [self.records[k] for k in keys if k in self.records]


def read_records(path) -> tuple[dict, list[dict]]:
    """(header, records sorted by index) of a finished or partial run, without modifying it."""
    header, records = {}, {}
    for line in Path(path).read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            break
        if rec.get("header"):
            header = {k: v for k, v in rec.items() if k != "header"}
        else:
            records[int(rec["index"])] = rec
    return header, [records[k] for k in sorted(records)]

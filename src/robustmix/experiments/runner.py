"""The one runner behind every long run: records, resume, sharding, progress, locking.

An experiment supplies two things: ``compute(x, y, indices) -> list[dict]``
(one record per example of a batch) and a summary of the records.  The
runner does the rest:

* **records**: one JSON Lines file, append-only, fsynced after every batch.
  Its first line is a header with the run's kind, its settings and the
  SHA-256 of every model's weights (not their paths).
* **resume**: a rerun computes only the examples whose records are missing.
  A torn last line (a crash mid-write) is cut off; a corrupt line elsewhere is
  skipped with a warning that names it, and its example is recomputed.
* **refusal**: resuming with other settings or other weights is refused with
  the way to start fresh, and a refused run changes nothing on disk.
  ``fresh=True`` moves the old records aside (never deletes them).
* **exactly n**: the result holds the records of the requested indices, in
  their order, whatever else the file holds.
* **locking**: an exclusive lock per records file; a second run into the same
  output fails at once instead of interleaving lines.
* **sharding**: under ``torchrun`` each rank takes its blocks of indices,
  writes its own file, and rank 0 merges them (see :mod:`robustmix.distributed`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Callable, Mapping

import torch
from tqdm.auto import tqdm

from .. import distributed
from .._config import from_keywords
from .._io import exclusive_lock, plain, weights_digest
from .._validation import model_device
from ..errors import ConfigError, InputError, RunError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
Compute = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], list]


def is_main_process() -> bool:
    """False on torchrun ranks other than 0 (they hold no merged result)."""
    return int(os.environ.get("RANK", "0")) == 0


def make_header(kind: str, settings: Mapping, models: Mapping | None = None) -> dict:
    """The header line of a records file: kind, settings and the weights' digests."""
    return json.loads(json.dumps(plain({
        "header": True, "schema_version": SCHEMA_VERSION, "kind": kind, "settings": dict(settings),
        "models": {name: weights_digest(m) for name, m in (models or {}).items()},
    }), allow_nan=False))


def load_records(path) -> tuple[dict, dict[int, dict]]:
    """(header, {index: record}) of a records file, without changing it.

    Corrupt lines and records without an integer ``index`` are skipped with a
    warning naming the line; a torn last line (no newline) is ignored.
    """
    path = Path(path)
    header, records = {}, {}
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        torn = number == len(lines)  # the text after the last newline: an interrupted write
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as exc:
            if not torn:
                logger.warning("%s line %d is corrupt (%s); skipping it, its example will be recomputed", path,
                               number, exc)
            continue
        if torn:
            continue
        if rec.get("header"):
            if number == 1:
                header = rec
            else:
                logger.warning("%s line %d: a second header; skipping it", path, number)
            continue
        index = rec.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            logger.warning("%s line %d has no integer 'index'; skipping it", path, number)
            continue
        records[index] = rec
    return header, records


def read_records(path) -> tuple[dict, list[dict]]:
    """(header, records sorted by index) of a finished or partial run, without changing it."""
    header, records = load_records(path)
    return header, [records[k] for k in sorted(records)]


# Kinds whose records do not depend on the batch size (each example's randomness is keyed by its own index;
# test_runner compares batch sizes example by example).  A run of these kinds resumes at another batch size, and
# --batch-size auto may pick a different one on another device.  Not evaluate: AutoAttack's members draw their
# random starts per batch, so the batch enters which (equally valid) worst case they find.
BATCH_FREE_KINDS = frozenset({"sweep"})
AUTO = "auto"
AUTO_GPU_START = 4096   # --batch-size auto on a GPU: the first try, halved on out-of-memory until a batch fits
AUTO_CPU = 250          # --batch-size auto on a CPU: a process out of RAM is often killed, not told, so no probing


def auto_batch_size(batch_size, device: torch.device, pending: int) -> int:
    """The batch size to start with: ``batch_size`` itself, or for "auto" the largest that may fit (a GPU starts at
    up to :data:`AUTO_GPU_START` examples and the runner halves it on out-of-memory; a CPU uses :data:`AUTO_CPU`)."""
    if batch_size != AUTO:
        return batch_size
    return max(1, min(pending, AUTO_GPU_START if device.type == "cuda" else AUTO_CPU))


def check_batch_size(batch_size, kind: str):
    """A positive integer, or "auto" for the kinds whose results do not depend on it."""
    if batch_size == AUTO and kind in BATCH_FREE_KINDS:
        return batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        also = ' or "auto"' if kind in BATCH_FREE_KINDS else ""
        raise ConfigError(f"--batch-size must be an integer >= 1{also}, got {batch_size!r}")
    return batch_size


def _differences(stored: dict, wanted: dict) -> list[str]:
    out = []
    if stored.get("kind") != wanted["kind"]:
        out.append(f"kind ({stored.get('kind')} vs {wanted['kind']})")
    s_set, w_set = stored.get("settings", {}), wanted["settings"]
    free = {"batch_size"} if wanted["kind"] in BATCH_FREE_KINDS else set()
    out += [f"{k} ({s_set.get(k)!r} vs {w_set.get(k)!r})" for k in sorted(set(s_set) | set(w_set))
            if s_set.get(k) != w_set.get(k) and k not in free]
    s_mod, w_mod = stored.get("models", {}), wanted["models"]
    out += [f"weights of {k}" for k in sorted(set(s_mod) | set(w_mod)) if s_mod.get(k) != w_mod.get(k)]
    return out


def check_data(x, y, indices) -> torch.Tensor:
    """The dataset index of each example (``indices``, or 0..n-1), after checking one label and one unique index
    per input."""
    if len(x) != len(y):
        raise InputError(f"{len(x)} inputs but {len(y)} labels: give one label per input")
    if indices is None:
        return torch.arange(len(x))
    indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
    if len(indices) != len(x):
        raise InputError(f"indices must give one dataset index per example ({len(indices)} for {len(x)} inputs)")
    if len(torch.unique(indices)) != len(indices):
        raise InputError("indices must be unique: each example appears once")
    return indices


class RecordFile:
    """Append-only records of one run, checked against the run's header before anything is written."""

    def __init__(self, path, header: dict, *, fresh: bool = False):
        self.path = Path(path)
        self.header = header
        self.records: dict[int, dict] = {}
        self._header_written = False
        if not self.path.exists():
            return
        stored, records = load_records(self.path)
        if fresh and (records or stored):
            backup = self.path.with_name(f"{self.path.name}.{time.strftime('%Y%m%d-%H%M%S')}.old")
            self.path.rename(backup)
            logger.info("moved the previous records to %s", backup)
            return
        diffs = _differences(stored, header) if stored else ["no header"]
        if diffs and records:
            raise ConfigError(f"{self.path} holds {len(records)} records of a different run ({'; '.join(diffs[:4])}"
                              f"{'; ...' if len(diffs) > 4 else ''}); rerun with --fresh to move them aside and start "
                              "over, or choose another --out")
        if diffs:  # a header-only file (or only unreadable lines): nothing to keep
            self.path.unlink()
            return
        self.records = records
        self._header_written = True
        self._cut_torn_tail()

    def _cut_torn_tail(self) -> None:
        raw = self.path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            logger.warning("%s: dropping a partial last record (interrupted write)", self.path)
            with open(self.path, "r+b") as fh:
                fh.truncate(raw.rfind(b"\n") + 1)

    def missing(self, indices: torch.Tensor) -> torch.Tensor:
        keep = [i for i in indices.tolist() if i not in self.records]
        return torch.tensor(keep, dtype=torch.long)

    def append(self, records: list[dict]) -> None:
        lines = [] if self._header_written else [self.header]
        lines += [r for r in records if r["index"] not in self.records]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            for obj in lines:
                fh.write(json.dumps(plain(obj), separators=(",", ":"), allow_nan=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._header_written = True
        for r in records:
            self.records[r["index"]] = r


@dataclasses.dataclass(frozen=True)
class Records:
    """Where and how a run keeps its per-example records: the JSON-lines file (None: in memory only), the settings
    its header holds (a resumed run must match them), ``fresh`` (move earlier records aside and start over), the
    progress bar and its label."""

    records_path: Path | str | None = None
    settings: Mapping = dataclasses.field(default_factory=dict)
    fresh: bool = False
    progress: bool = True
    desc: str | None = None

    def for_run(self, desc: str, settings: Mapping) -> "Records":
        """The same file and switches with a progress label, and a run's own ``settings`` under the caller's in the
        header (the caller's win where both name a key)."""
        return dataclasses.replace(self, desc=self.desc or desc, settings={**settings, **self.settings})

    def at(self, records_path, **settings) -> "Records":
        """The same switches for another records file (one of a run's several), with more header ``settings``."""
        return dataclasses.replace(self, records_path=records_path, settings={**self.settings, **settings})


RECORDS_KEYWORDS = frozenset(f.name for f in dataclasses.fields(Records))


def records_of(records: Records | None, deprecated: dict, caller: str) -> Records:
    """The run's :class:`Records`, or one built from the keywords the run functions used to take (records_path,
    settings, fresh, progress: deprecated for one release)."""
    return from_keywords(Records, records, deprecated, caller, stacklevel=4) or Records()


def run_records(records: Records | None, compute: Compute, x: torch.Tensor, y: torch.Tensor, *, kind: str,
                models: Mapping | None = None, indices=None, batch_size: int = 100) -> list[dict]:
    """Run (or resume) ``compute`` over ``x, y`` in batches; returns exactly the requested records, in order.

    ``indices`` are the examples' dataset indices (default 0..n-1); they key the
    records and seed the randomness, so the result does not depend on batch size,
    order, resumption or sharding.  ``compute(xb, yb, idx)`` gets a batch on the
    models' device and returns one dict per example; the runner adds ``index``
    and ``label``.  ``records``: where they are kept (:class:`Records`; its path None or ``records`` None: nothing
    is written).
    """
    records = records or Records()
    path, settings, fresh, progress, desc = (records.records_path, records.settings, records.fresh, records.progress,
                                             records.desc)
    indices = check_data(x, y, indices)
    check_batch_size(batch_size, kind)
    models = dict(models or {})
    device = next((model_device(m) for m in models.values() if isinstance(m, torch.nn.Module)), x.device)
    if path is None:
        return _loop(None, compute, x, y, indices, Batches(indices, batch_size, device, progress, desc or kind))
    path = Path(path)
    dist = distributed.setup()
    if dist.active:
        device = dist.device
        for m in models.values():
            if isinstance(m, torch.nn.Module):
                m.to(device)
    header = make_header(kind, settings, models)
    mine = dist.shard(indices, auto_batch_size(batch_size, device, len(indices)))
    rank_path = dist.records_path(path)
    with exclusive_lock(rank_path.with_name(f".{rank_path.name}.lock")):
        store = RecordFile(rank_path, header, fresh=fresh)
        pending = store.missing(mine)
        if len(pending) < len(mine):
            logger.info("resuming %s: %d of %d examples already done", kind, len(mine) - len(pending), len(mine))
        _loop(store, compute, x, y, indices, Batches(pending, batch_size, device, progress, desc or kind, len(mine)))
    dist.barrier()
    if dist.active:
        if dist.rank == 0:
            merge_shards(path, dist.world)
        dist.barrier()
    if dist.active and dist.rank != 0:
        return []
    records = load_records(path)[1] if dist.active else store.records
    return [records[i] for i in indices.tolist()]


def out_of_memory(exc: BaseException) -> bool:
    """True for an allocation failure of the GPU or of CPU RAM (torch raises both as errors, not kills)."""
    text = str(exc).lower()
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or (isinstance(exc, RuntimeError) and any(
        s in text for s in ("out of memory", "not enough memory", "can't allocate memory")))


@dataclasses.dataclass
class Batches:
    """What :func:`_loop` walks: the ``pending`` indices in batches of ``batch_size`` on ``device``, with a progress
    bar labelled ``desc`` over ``total`` examples (default: the pending ones)."""

    pending: torch.Tensor
    batch_size: int
    device: torch.device
    progress: bool
    desc: str
    total: int | None = None


def _loop(store, compute, x, y, indices, batches: Batches) -> list[dict]:
    """Batches of ``batch_size``; a batch that runs out of memory is retried at half the size (and that size is
    kept), so a batch size too large for the device costs one failed batch, not the run."""
    pending, device, progress, desc = batches.pending, batches.device, batches.progress, batches.desc
    batch_size, chosen = auto_batch_size(batches.batch_size, device, len(pending)), batches.batch_size != AUTO
    position = {i: p for p, i in enumerate(indices.tolist())}
    total = len(pending) if batches.total is None else batches.total
    out = []
    start = 0
    with tqdm(total=total, initial=total - len(pending), desc=desc, unit="img", disable=not progress) as bar:
        while start < len(pending):
            idx = pending[start:start + batch_size]
            rows = torch.tensor([position[i] for i in idx.tolist()], dtype=torch.long)
            try:
                xb, yb = x[rows].to(device), y[rows].to(device)
                recs = compute(xb, yb, idx)
            except Exception as exc:  # noqa: BLE001  (only out-of-memory is handled; the rest re-raised)
                if not out_of_memory(exc) or len(idx) == 1:
                    if out_of_memory(exc):
                        raise RunError(f"{desc}: one example does not fit in memory on {device}; free memory or "
                                       "use a smaller model") from exc
                    raise
                xb = yb = None
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                batch_size = max(1, len(idx) // 2)
                logger.warning("%s: a batch of %d did not fit in memory on %s; continuing with batches of %d "
                               "(--batch-size sets the start)", desc, len(idx), device, batch_size)
                continue
            start += len(idx)
            if not chosen:
                logger.info("%s: --batch-size auto chose %d examples per batch on %s", desc, batch_size, device)
                chosen = True
            if len(recs) != len(idx):
                raise RunError(f"{desc}: compute returned {len(recs)} records for {len(idx)} examples")
            recs = [{"index": int(i), "label": int(yb[j]), **r} for j, (i, r) in enumerate(zip(idx.tolist(), recs))]
            if store is not None:
                store.append(recs)
            out += recs
            bar.update(len(idx))
    return out


def merge_shards(path, world: int) -> None:
    """Merge ``stem.rank{r}.jsonl`` into ``path``: one header, records sorted by index, no duplicates."""
    from .._io import atomic_write_bytes

    path = Path(path)
    header, records = None, {}
    for r in range(world):
        part_path = path.with_name(f"{path.stem}.rank{r}{path.suffix}")
        if not part_path.exists():  # a rank whose shard was empty wrote nothing
            continue
        part_header, part = load_records(part_path)
        header = header or part_header
        overlap = set(part) & set(records)
        if overlap:
            raise RunError(f"example {min(overlap)} appears in two shards; the shards overlap")
        records.update(part)
    lines = ([header] if header else []) + [records[k] for k in sorted(records)]
    atomic_write_bytes(path, "".join(json.dumps(o, separators=(",", ":")) + "\n" for o in lines).encode())

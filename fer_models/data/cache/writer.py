"""The shard writer: stage output -> shards in a temporary folder, renamed into place.

``close()`` writes ``meta.json`` (counts, failures, key inputs, timings) and
``failures.csv`` and renames the temporary folder atomically, so a killed run never leaves
a folder that looks complete; ``abort()`` removes it.

Failures are never dropped silently. An *unreadable* image (missing/corrupt file) has no
pixels: the row is kept out of the shards and listed in ``failures.csv``. A *no-face* row
(the backend returned None) still has a valid image and label, so it is **kept for
classification** with ``au_valid=False`` / ``gt_valid=False`` (the alignment loss and the
localisation metrics skip it), and it is also listed in ``failures.csv`` and counted.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np

from fer_models.data.cache.layout import CACHE_FORMAT, NO_FACE, OK, SHARD_COLUMNS, SOURCE_COLUMNS, UNREADABLE
from fer_models.data.cache.reader import CacheInfo, open_cache
from fer_models.data.cache.rows import sequence_names
from fer_models.data.manifest import SPLITS, Manifest
from fer_models.labels import output_names

SHARD_ROWS = 1000  # rows per shard (read when a writer is made, so a test may lower it)


class CacheWriter:
    """Streams stage output into shards in a temporary folder; ``close()`` renames it.

    Rows are written in arrival order; both executors deliver manifest order (Ray Data
    with ``preserve_order``), and each shard keeps the global ``row`` index anyway.
    """

    def __init__(self, final_dir: Path, inputs: dict, manifest: Manifest, shard_rows: int | None = None):
        self.final_dir = Path(final_dir)
        self.inputs = inputs
        self.manifest = manifest
        self.shard_rows = int(shard_rows or SHARD_ROWS)
        self.final_dir.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.final_dir.parent / f".{self.final_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir()
        self.t0 = time.perf_counter()
        self.pending: dict[str, list[dict[str, np.ndarray]]] = {s: [] for s in SPLITS}
        self.pending_n = Counter()
        self.shards: dict[str, list[str]] = {s: [] for s in SPLITS}
        self.counts = Counter()
        self.failures: list[tuple[str, str, str]] = []  # path, split, reason
        self.rows_in = 0
        self.stage_s = Counter()
        self.first_batch_s: float | None = None
        self.first_batch_rows = 0
        self.by_class: dict[int, Counter] = {}  # label -> readable rows, no-face rows
        self.fallback_rows = 0  # landmarks found only with the whole image as the face box
        self.columns = [k for k in SHARD_COLUMNS if k not in SOURCE_COLUMNS]  # + source columns if any
        self.src_origins: dict[str, Counter] = {}  # split -> AU-source origin name -> rows

    def add(self, batch: dict[str, np.ndarray]) -> None:
        n = len(batch["row"])
        if self.first_batch_s is None:  # start-up latency (Ray: workers starting), for benchmarks
            self.first_batch_s, self.first_batch_rows = time.perf_counter() - self.t0, n
        self.rows_in += n
        self.stage_s["landmarks"] += float(np.sum(batch.get("t_landmarks", 0.0)))
        self.stage_s["au_maps"] += float(np.sum(batch.get("t_au", 0.0)))
        status = np.asarray(batch["status"]).astype(str)
        for j in np.flatnonzero(status != OK):
            self.failures.append((str(batch["path"][j]), str(batch["split"][j]), str(status[j])))
        keep = status != UNREADABLE
        for label, st in zip(np.asarray(batch["label"])[keep], status[keep]):
            c = self.by_class.setdefault(int(label), Counter())
            c["rows"] += 1
            c[NO_FACE] += int(st == NO_FACE)
        self.fallback_rows += int(np.sum(batch.get("fallback_box", 0)))
        splits = np.asarray(batch["split"]).astype(str)
        if "src_origin" in batch and "src_origin" not in self.columns:
            self.columns += list(SOURCE_COLUMNS)
        for split in SPLITS:
            sel = keep & (splits == split)
            if not sel.any():
                continue
            part = {k: np.asarray(batch[k])[sel] for k in self.columns}
            if "src_origin" in part:
                from fer_models.data.au import SRC_ORIGINS

                c = self.src_origins.setdefault(split, Counter())
                for code, n in zip(*np.unique(part["src_origin"], return_counts=True)):
                    c[SRC_ORIGINS[int(code)]] += int(n)
            part["path"] = part["path"].astype(str)
            part["identity"] = part["identity"].astype(str)
            self.pending[split].append(part)
            self.pending_n[split] += int(sel.sum())
            while self.pending_n[split] >= self.shard_rows:
                self._flush(split, self.shard_rows)

    def _flush(self, split: str, n: int | None = None) -> None:
        parts = self.pending[split]
        if not parts:
            return
        cat = {k: np.concatenate([p[k] for p in parts]) for k in self.columns}
        n = len(cat["row"]) if n is None else n
        head = {k: v[:n] for k, v in cat.items()}
        rest = {k: v[n:] for k, v in cat.items()}
        name = f"{split}-{len(self.shards[split]):05d}"
        (self.tmp / name).mkdir()
        for k, v in head.items():  # one .npy a column: memory-mappable by the dataset
            np.save(self.tmp / name / f"{k}.npy", np.ascontiguousarray(v), allow_pickle=False)
        self.shards[split].append(name)
        self.counts[split] += n
        self.pending[split] = [rest] if len(rest["row"]) else []
        self.pending_n[split] = len(rest["row"])

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def close(self, extra_meta: dict | None = None) -> CacheInfo:
        for split in SPLITS:
            self._flush(split)
        seconds = time.perf_counter() - self.t0
        with open(self.tmp / "failures.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "split", "reason"])
            w.writerows(self.failures)
        fails = Counter(r for _, _, r in self.failures)
        examples: dict[str, list[str]] = {}
        for p, _, r in self.failures:
            if len(examples.setdefault(r, [])) < 5:
                examples[r].append(p)
        m = self.manifest
        meta = {
            "format": CACHE_FORMAT,
            "key": self.final_dir.name,
            "dataset": m.dataset,
            "root": str(m.root),
            "num_classes": len(m.output_classes()),
            "class_names": output_names(m.output_classes()),
            "inputs": self.inputs,
            "rows_in": self.rows_in,
            "counts": {s: int(self.counts.get(s, 0)) for s in SPLITS},
            "shards": self.shards,
            "failures": dict(sorted(fails.items())),
            "failure_examples": examples,
            "reader_skipped": dict(m.skipped),
            "reader_skipped_examples": {k: list(v) for k, v in m.skipped_examples.items()},
            "reader_landmark_errors": dict(getattr(m, "landmark_errors", {})),
            "timings": {"total_s": round(seconds, 3),
                        "first_batch_s": round(self.first_batch_s or 0.0, 3),
                        "first_batch_rows": self.first_batch_rows,
                        **{f"{k}_s": round(v, 3) for k, v in self.stage_s.items()}},
            "rows_per_s": round(self.rows_in / seconds, 2) if seconds > 0 else None,
            "identities": sorted({s.identity for s in m.samples if s.identity is not None}),
            "sequences": sequence_names(m),
            # the landmark failure rate per class (failures are not random across
            # classes, so they bias the AU-loss sample); keyed by the class index
            "landmark_failures_by_class": {
                str(k): {"rows": c["rows"], "no_face": c[NO_FACE], "rate": round(c[NO_FACE] / c["rows"], 6)}
                for k, c in sorted(self.by_class.items())},
            "landmark_fallback_rows": self.fallback_rows,
            **({"au_source": {"source": self.inputs.get("au_source"),
                              "rows": {s: dict(sorted(c.items())) for s, c in sorted(self.src_origins.items())}}}
               if self.src_origins else {}),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **(extra_meta or {}),
        }
        (self.tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        try:
            os.rename(self.tmp, self.final_dir)  # atomic: the folder appears complete or not at all
        except OSError:
            if not (self.final_dir / "meta.json").exists():
                raise
            self.abort()  # another run finished the same cache first: keep theirs
        info = open_cache(self.final_dir)
        info.hit = False
        info.seconds = seconds
        return info

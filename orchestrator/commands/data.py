"""`fer-orch data`: write the synthetic faces, and look at AU maps on any dataset."""

from __future__ import annotations

import click

# Importing the AU module fills the CODEBOOKS registry, so `fer-orch list codebooks` sees it.
import fer_models.data.au  # noqa: F401


@click.group("data")
def data() -> None:
    """Synthetic faces and AU-map checks."""


@data.command("synth")
@click.option("--layout", type=click.Choice(["rafdb", "affectnet", "ckplus", "disfa", "rafd", "kdef", "tfd", "fer2013"]),
              required=True,
              help="Official on-disk layout to write (ckplus, disfa, rafd, kdef: whole frames with an off-centre "
                   "face, subjects and their sequences / videos / camera angles; --n-train and --n-test do not "
                   "apply. tfd, fer2013: grey faces packed in TFD's .mat files (96 and 48 px; --n-train + "
                   "--n-test faces, split by TFD's folds) or FER2013's csv (48 px; --n-test PublicTest and as many "
                   "PrivateTest rows); --size does not apply).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Dataset root to create.")
@click.option("--n-train", default=1400, show_default=True, type=int)
@click.option("--n-test", default=350, show_default=True, type=int)
@click.option("--size", default=64, show_default=True, type=int, help="Image side (px).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--identities", default=40, show_default=True, type=int)
@click.option("--overwrite", is_flag=True, help="Replace a synthetic dataset already at --out.")
def synth_cmd(layout, out, n_train, n_test, size, seed, identities, overwrite) -> None:
    """Write synthetic expressive faces in RAF-DB's, AffectNet's, CK+'s, DISFA's, RaFD's or KDEF's official layout."""
    import time

    from fer_models.data.synth import frames as synth_frames, packed as synth_packed, portraits as synth_portraits
    from fer_models.data.synth.io import SIDE_FILE, write_dataset

    t0 = time.time()
    writers = {**synth_frames.WRITERS, **synth_portraits.WRITERS}
    if layout in synth_packed.WRITERS:
        counts = dict(n_faces=n_train + n_test) if layout == "tfd" else dict(n_train=n_train, n_val=n_test,
                                                                             n_test=n_test)
        root = synth_packed.WRITERS[layout](out, **counts, n_identities=identities, seed=seed, overwrite=overwrite)
        what = f"{n_train + n_test}" if layout == "tfd" else f"{n_train} train + {n_test} val + {n_test} test"
        size = 96 if layout == "tfd" else 48
    elif layout in writers:
        root = writers[layout](out, n_identities=identities, image_size=size, seed=seed, overwrite=overwrite)
        n = sum(1 for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg"))
        what = f"{n} whole frames"
    else:
        root = write_dataset(out, layout, n_train, n_test, size, seed, identities, overwrite=overwrite)
        what = f"{n_train} train + {n_test} test"
    dt = time.time() - t0
    click.echo(
        f"wrote {what} synthetic faces ({size} px, {identities} identities) "
        f"in the {layout} layout to {root} in {dt:.1f} s; ground truth in {root / SIDE_FILE}"
    )
    click.echo(f"read it with: fer-orch preprocess --dataset {layout} --root {root}")


def _pick(samples, n: int, seed: int):
    """Up to ``n`` samples, round-robin over the labels (in label order), seeded."""
    import numpy as np

    rng = np.random.default_rng(seed)
    by: dict[int, list] = {}
    for s in samples:
        by.setdefault(s.label, []).append(s)
    pools = {k: [v[i] for i in rng.permutation(len(v))] for k, v in sorted(by.items())}
    out = []
    while len(out) < n and any(pools.values()):
        for k in list(pools):
            if pools[k] and len(out) < n:
                out.append(pools[k].pop())
    return sorted(out, key=lambda s: s.label)


@data.command("show")
@click.option("--dataset", default="synthetic-rafdb", show_default=True,
              help="A dataset name (`fer-orch list datasets`).")
@click.option("--root", default=None, help="Dataset root (default: the reader's).")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test", "all"]))
@click.option("--data-opt", "data_opts", multiple=True, metavar="NAME=VALUE",
              help="A dataset reader option, repeatable (e.g. --data-opt angles=all).")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="PNG to write (default: $FER_ORCH_HOME/show/<dataset>.png).")
@click.option("--n", "n", default=16, show_default=True, type=int, help="Number of faces.")
@click.option("--codebook", default="paper002", show_default=True)
@click.option("--landmarks", "backend", default="auto", show_default=True,
              help="Landmark backend; auto = shipped/ground truth, else a detector.")
@click.option("--map-size", default=32, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--au-source", "au_sources", default=None,
              help="Comma-separated AU sources drawn side by side (codebook, labels, codebook+labels, "
                   "detector:NAME) [default: codebook, plus labels and codebook+labels where the faces have AU labels].")
def show_cmd(dataset, root, split, data_opts, out, n, codebook, backend, map_size, seed, au_sources) -> None:
    """Write a PNG grid of faces with the AU map of each source overlaid side by side (the
    codebook's; the labelled AUs' and the codebook's active AUs' where the dataset has AU
    labels; a detector's) and, for synthetic data, the map of the AUs truly active."""
    from pathlib import Path

    import numpy as np

    from fer_models import paths
    from fer_models.data.au import (AU_IDS, CODEBOOK, detector_name, parse_au_source, render_au_maps,
                                    source_au_maps)
    from fer_models.data.cache import resolve_backend
    from fer_models.data.images import load_image
    from fer_models.data.overlay import overlay_grid
    from fer_models.data.readers import read_dataset
    from fer_models.errors import ConfigError, DatasetError
    from fer_models.labels import EXPRESSIONS

    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    from fer_models.config import DataConfig, validate_data

    validate_data(DataConfig(dataset=dataset, codebook=codebook, landmarks=backend, map_size=map_size))
    from orchestrator.options import parse_data_opts, parse_list

    wanted = [parse_au_source(s) for s in parse_list(au_sources) or ()]

    manifest = read_dataset(dataset, root, **parse_data_opts(data_opts))
    picked = _pick(manifest.split(split), n, seed)
    if not picked:
        raise DatasetError(f"{dataset} has no '{split}' images; pick another --split")
    images = [load_image(s.path) for s in picked]
    backend_cls = resolve_backend(backend, manifest)  # "auto" as preprocessing resolves it
    detector = backend_cls(device="cpu")
    found = detector.detect(images, picked)
    nan = np.full((68, 2), np.nan, np.float32)
    labelled = any(s.aus is not None for s in picked)
    sources = wanted or [CODEBOOK] + (["labels", "codebook+labels"] if labelled else [])
    titles, gt_maps, lms = [], [], []
    maps: dict[str, list] = {src: [] for src in sources}
    synthetic = all(s.meta.get("synthetic") for s in picked)
    for img, s, lm in zip(images, picked, found):
        hw = img.shape[:2]
        lm = nan if lm is None else np.asarray(lm, np.float32)
        for src in sources:  # the training map of each source, same face
            name = detector_name(src)
            if name is not None:
                from fer_models.data.au_detectors import predict_aus

                aus = predict_aus(name, np.asarray(img)[None], lm[None])
            else:
                aus = np.array([[np.nan] * len(AU_IDS) if s.aus is None else
                                 [float(s.aus.get(a, 0.0)) for a in AU_IDS]], np.float32)
            m, ok, origin = source_au_maps(lm[None], [s.label], aus, codebook, src, hw, map_size)
            maps[src].append(m[0] if ok[0] else None)
        lms.append(lm)
        titles.append(EXPRESSIONS[s.label] + ("" if np.isfinite(lm).all() else " (no face)"))
        if synthetic and "labels" not in sources:
            w = np.array([[s.aus.get(a, 0.0) for a in AU_IDS]], np.float32)
            g = render_au_maps(lm[None], w, hw, map_size)[0]
            gt_maps.append(g if g.max() > 0 else None)
    panels = {(f"codebook {codebook}" if src == CODEBOOK else "labels = true AUs" if synthetic and src == "labels"
               else src): maps[src] for src in sources}
    if gt_maps:
        panels["true AUs"] = gt_maps
    out = Path(out) if out else paths.home() / "show" / f"{dataset}.png"
    overlay_grid(images, panels, titles, out, landmarks=lms, ncols=4)
    click.echo(f"wrote {out} ({len(picked)} {split} faces of {dataset}, landmarks: {backend_cls.name})")


COMMANDS: list = [data]

"""`fer-orch preprocess`: landmarks + AU maps into the versioned cache, with Ray Data."""

from __future__ import annotations

import click


@click.command("preprocess")
@click.option("--dataset", required=True, help="A dataset name (`fer-orch list datasets`).")
@click.option("--root", default=None, help="Dataset root on disk (default: the reader's).")
@click.option("--landmarks", default="auto", show_default=True,
              help="Landmark backend (`fer-orch list landmarks`); "
                   "auto = shipped/ground truth, else a detector.")
@click.option("--codebook", default="paper002", show_default=True, help="AU codebook.")
@click.option("--image-size", default=64, show_default=True, type=int, help="Stored image side (px).")
@click.option("--map-size", default=32, show_default=True, type=int, help="AU-map side (cells).")
@click.option("--val-fraction", default=0.1, show_default=True, type=float,
              help="Fraction of train carved out as validation (part of the cache key).")
@click.option("--split-seed", default=0, show_default=True, type=int, help="Seed of that carving.")
@click.option("--data-opt", "data_opts", multiple=True, metavar="NAME=VALUE",
              help="A dataset reader option, repeatable (e.g. --data-opt classes=6 --data-opt fold=3).")
@click.option("--workers", default=None, type=int,
              help="Landmark actors (default: one per GPU, else one per CPU).")
@click.option("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else local).")
@click.option("--cache-root", default=None, help="Cache folder (default: $FER_ORCH_HOME/cache).")
def preprocess_cmd(dataset, root, landmarks, codebook, image_size, map_size, val_fraction,
                   split_seed, data_opts, workers, address, cache_root) -> None:
    """Stream a dataset through the landmark and AU-map stages into the cache (reused if present)."""
    from fer_models import paths
    from fer_models.config import DataConfig, validate_data
    from fer_models.data.readers import check_options
    from fer_models.errors import ConfigError
    from orchestrator.options import parse_data_opts
    from orchestrator.preprocess import preprocess

    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    options = parse_data_opts(data_opts)
    check_options(dataset, options)  # a bad reader option: one sentence listing the valid ones
    cfg = validate_data(DataConfig(dataset=dataset, root=root, landmarks=landmarks, codebook=codebook,
                                   image_size=image_size, map_size=map_size, val_fraction=val_fraction,
                                   split_seed=split_seed, options=options))
    if cache_root:
        paths.check_writable(cache_root, "the cache folder (--cache-root)", "pass --cache-root a writable folder")
    else:
        paths.check_home()
    info = preprocess(cfg, address=address, num_workers=workers, cache_root=cache_root, echo=click.echo)
    preview = info.dir / "preview.png"
    if not preview.exists():
        from fer_models.data.cache import write_preview

        write_preview(info.dir, out=preview)
    click.echo(f"  preview of faces with their AU maps: {preview}")


COMMANDS: list = [preprocess_cmd]

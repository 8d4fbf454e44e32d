"""`fer-orch train`: one training run, locally, no Ray (fer_models.train.train with a progress bar).

The options' defaults are those of ``fer_models.config.TrainConfig`` / ``DataConfig``.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import click

from fer_models.config import METRIC_DEF, METRIC_DEFS, DataConfig, TrainConfig, au_loss_on
from fer_models.errors import ConfigError
from orchestrator.commands import schema_option

_T, _D = TrainConfig(), DataConfig()


def _kv(items: tuple[str, ...]) -> dict:
    import yaml

    out = {}
    for it in items:
        if "=" not in it:
            raise ConfigError(f"--method-kw expects KEY=VALUE, got '{it}'")
        k, v = it.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def _fmt(v) -> str:
    return "nan" if isinstance(v, float) and math.isnan(v) else (f"{v:.4f}" if isinstance(v, float) else str(v))


#: the file of a run folder naming the config hash (orchestrator.config.config_hash) it trains
CONFIG_KEY_FILE = "config_hash.txt"


def run_key(cfg: TrainConfig) -> str:
    """The run folder's key: the grid's ``config_hash``, mixed with the dataset root when one
    is given. The grid leaves ``root`` out of its hash (each node of a cluster may mount the
    data elsewhere), but on one machine two roots are two datasets (`--root`)."""
    import hashlib

    from orchestrator.config import config_hash

    key = config_hash(cfg)
    if cfg.data.root is None:
        return key
    root = Path(cfg.data.root).expanduser().resolve()
    return hashlib.sha1(f"{key}|{root}".encode()).hexdigest()[:12]


def check_run_dir(run_dir: Path, key: str, resume: bool) -> None:
    """Refuse to resume, in ``run_dir``, a checkpoint of another config (the folder
    was once named by dataset, method, AU and seed only, so `--lambda 5` reused the λ=1
    model and printed its metrics under the new settings). The default folder carries the
    config hash, so this only fires for an ``--out`` reused with other settings; otherwise
    the hash is written before any training, and the folder checked writable."""
    from fer_models.paths import check_writable

    check_writable(run_dir, "the run folder", "pass --out a writable folder")
    marker = run_dir / CONFIG_KEY_FILE
    old = marker.read_text().strip() if marker.is_file() else None
    if resume and (run_dir / "checkpoint.pt").exists() and old != key:
        raise ConfigError(
            f"run folder '{run_dir}' holds a checkpoint of another configuration "
            f"({'config ' + old if old else 'written before configs were recorded'}, this one is {key}); "
            f"pass another --out, or --no-resume to train this configuration there from scratch"
        )
    marker.write_text(key + "\n")


@click.command("train")
@click.option("--dataset", required=True, help="A dataset name (fer-orch list datasets), e.g. synthetic-rafdb.")
@click.option("--method", required=True, help="A method name (fer-orch list methods), e.g. cam.")
@click.option("--backbone", default=_T.backbone, show_default=True, help="A backbone name (fer-orch list backbones).")
@click.option("--pretrained", default=str(_T.pretrained).lower(), show_default=True,
              help="false, true (timm hub) or a local weights file.")
@click.option("--au/--no-au", default=_T.au, show_default=True, help="Add the AU alignment loss (paper 002, Eq. 3).")
@schema_option(TrainConfig, "lam", "--lambda", "--lam", "lam", help="λ, the weight of the AU loss (0: no AU loss).")
@click.option("--layers", default="+".join(map(str, _T.layers)), show_default=True, help="Aligned layers, e.g. 5 or 5+4+3.")
@schema_option(TrainConfig, "epochs", "--epochs")
@schema_option(TrainConfig, "batch_size", "--batch-size")
@schema_option(TrainConfig, "lr", "--lr")
@click.option("--optimizer", default=_T.optimizer, show_default=True, help="sgd (paper 002), adam or adamw.")
@schema_option(DataConfig, "image_size", "--image-size")
@schema_option(DataConfig, "val_fraction", "--val-fraction",
              help="Share of the training rows (subjects, where the reader splits by subject) held out for validation; "
                   "0 trains without validation and keeps the last epoch.")
@schema_option(TrainConfig, "seed", "--seed")
@click.option("--device", default=_T.device, show_default=True)
@click.option("--method-kw", multiple=True, help="Method hyper-parameter KEY=VALUE (repeatable), e.g. alpha=0.6.")
@click.option("--root", default=None, help="Dataset root on disk (default: the reader's).")
@click.option("--data-opt", "data_opts", multiple=True, metavar="NAME=VALUE",
              help="A dataset reader option, repeatable (e.g. --data-opt classes=6 --data-opt fold=3).")
@click.option("--metric-def", type=click.Choice(METRIC_DEFS), default=METRIC_DEF, show_default=True,
              help="How CAM-/ATT-COS are computed: the project's definition or the released code's (fer_models.metrics).")
@click.option("--target", type=click.Choice(["expression", "identity"]), default=_T.target, show_default=True,
              help="What the network predicts: the expression, or the subject's identity (paper 003; needs --no-au).")
@click.option("--au-source", default=_D.au_source, show_default=True,
              help="Where the AU map's AUs come from: codebook (paper 002), labels (the image's labelled active AUs), "
                   "codebook+labels (= codebook∩labels) or detector:NAME (fer-orch list au-detectors).")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None, help="Run folder (default under FER_ORCH_HOME/runs).")
@click.option("--resume/--no-resume", default=True, show_default=True)
def train_cmd(dataset, method, backbone, pretrained, au, lam, layers, epochs, batch_size, lr, optimizer, image_size, val_fraction,
              seed, device, method_kw, root, data_opts, metric_def, target, au_source, out, resume):
    """Train one METHOD on DATASET (with or without AU alignment) and print its test metrics."""

    from fer_models import paths
    from fer_models.config import parse_layers, validate, validate_data
    from fer_models.data.readers import check_options
    from fer_models.registry import METHODS
    from orchestrator.options import parse_data_opts

    METHODS.get(method)  # unknown method: one red line before any data work
    if not au and click.get_current_context().get_parameter_source("lam") == click.core.ParameterSource.COMMANDLINE:
        raise ConfigError(f"--lambda {lam:g} weighs the AU loss, which --no-au turns off; drop --lambda, or --no-au")
    options = parse_data_opts(data_opts)
    check_options(dataset, options)  # a bad reader option: one sentence listing the valid ones
    cfg = validate(TrainConfig(
        method=method, backbone=backbone, pretrained=pretrained, au=au, lam=lam, layers=parse_layers(layers),
        epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, seed=seed, device=device, method_kwargs=_kv(method_kw),
        metric_def=metric_def, target=target, data=validate_data(DataConfig(dataset=dataset, root=root, image_size=image_size, val_fraction=val_fraction,
                                                     options=options,
                                                     au_source=au_source)),
    ))
    tag = "".join(f"-{k}{v}" for k, v in sorted(options.items())) + ("-identity" if target == "identity" else "")
    if cfg.data.au_source != "codebook":
        tag += "-" + cfg.data.au_source.replace(":", "-")
    key = run_key(cfg)
    run_dir = Path(out) if out else paths.home() / "runs" / f"{dataset}{tag}-{method}-{'au' if au else 'noau'}-s{seed}-{key}"
    paths.check_home()  # the dataset cache lives there, whatever --out says
    with run_lock(run_dir):
        check_run_dir(run_dir, key, resume)
        click.echo(f"run folder: {run_dir}")
        _train_and_print(cfg, run_dir, resume, method, au_loss_on(cfg.au, cfg.lam), dataset)  # λ = 0: w/o AU


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """An exclusive lock on ``run_dir`` for one `fer-orch train`: a second process training
    the same folder (the same command twice on one FER_ORCH_HOME) is refused in one sentence
    instead of splicing its epochs into the first one's history. An ``flock``:
    the kernel drops the lock when its process dies, so a killed run leaves none behind."""
    from fer_models.errors import FerOrchError
    from fer_models.paths import Busy, check_writable, exclusive_lock

    check_writable(run_dir, "the run folder", "pass --out a writable folder")
    try:
        with exclusive_lock(run_dir / ".fer-orch-train.lock", wait=False):
            yield
    except Busy:
        raise FerOrchError(f"run folder '{run_dir}' is in use by another `fer-orch train` of the same configuration; "
                           "wait for it to finish (its result is then reused), or pass another --out") from None


def _train_and_print(cfg: TrainConfig, run_dir: Path, resume: bool, method: str, au: bool, dataset: str) -> None:
    from fer_models.faithfulness import KEYS as FAITHFULNESS_KEYS
    from fer_models.metrics import save_figures
    from fer_models.train import train

    def on_epoch(epoch, m):
        click.echo(f"epoch {epoch}: loss {m['train_loss']:.3f}  val CL {m['val_cl']:.2f}  "
                   f"CAM-COS {_fmt(m['val_cam_cos'])}  ATT-COS {_fmt(m['val_att_cos'])}  lr {m['lr']:.4g}")

    res = train(cfg, run_dir, on_epoch=on_epoch, resume=resume, progress=True)
    figs = save_figures(res.test, run_dir, title=f"{method} {'w/' if au else 'w/o'} AU on {dataset}")
    (run_dir / "history.json").write_text(json.dumps(res.history, indent=2))
    click.secho(f"\ntest metrics ({method}, {'w/' if au else 'w/o'} AU, backbone {res.backbone}, "
                f"best epoch {res.best_epoch}, {res.seconds:.1f} s)", bold=True)
    for k in ("cl", "cam_cos", "att_cos", "gt_cam_cos", "gt_att_cos", *FAITHFULNESS_KEYS):
        click.echo(f"  {k:<11} {_fmt(res.test.metrics.get(k, float('nan')))}")
    click.echo(f"weights: {res.best_path}\nfigures: {', '.join(str(p) for p in figs)}")


COMMANDS: list = [train_cmd]

"""`fer-orch` command: audit (a zoo network, or a grid's trained one, scored with paper 002's metrics)."""

from __future__ import annotations

import math

import click

from orchestrator.options import parse_data_opts, parse_list


def _num(v) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"


@click.command("audit")
@click.option("--model", "models", multiple=True, metavar="NAME",
              help="Zoo model(s), comma-separated or repeated: `fer-orch list models`.")
@click.option("--run", "runs", multiple=True, metavar="RUN_ID",
              help="A trained trial run (or a grid parent: all its trials) audited the same way, on --dataset.")
@click.option("--dataset", "datasets", multiple=True, metavar="NAME", help="Dataset(s) whose test split is scored.")
@click.option("--images", "images", multiple=True, type=click.Path(file_okay=False),
              help="A folder of face photos: per photo the prediction, its probability, the CAM-COS of the "
                   "predicted class and an overlay PNG.")
@click.option("--weights", default=None, help="Bring your own: the weights (timm) or TorchScript file.")
@click.option("--arch", default=None, help="Bring your own (--model timm): the timm architecture name.")
@click.option("--classes", default=None, help="Bring your own: the network's outputs in order, comma-separated "
                                              "(anger,disgust,fear,happiness,sadness,surprise,neutral).")
@click.option("--input", "input_spec", default=None, metavar="SIZE,gray|rgb,NORM",
              help="Bring your own: input side, channels and normalisation (unit, pm1 or imagenet), e.g. 224,rgb,imagenet.")
@click.option("--layers", default=None, help="Bring your own (--model timm): up to 5 module names, shallow to deep "
                                             "(default: timm's feature_info stages).")
@click.option("--cam", "cam_class", default="GradCAM", show_default=True,
              help="The Grad-CAM-family map: a pytorch-grad-cam class (GradCAM, GradCAMPlusPlus, LayerCAM, XGradCAM ...).")
@click.option("--job", "jobs", multiple=True, metavar="JOB",
              help="Explain jobs also run on the network (topn, filter-au, block-maps ...: `fer-orch list jobs`).")
@click.option("--probe", "probes", multiple=True, metavar="PROBE",
              help="Probes across the layers on the test faces (silhouette, valence-arousal, maps, faces, correct: `fer-orch list probes`).")
@click.option("--faithfulness-n", "faith_n", type=int, default=32, show_default=True,
              help="Test faces scored by deletion / insertion (0: none).")
@click.option("--codebook", default="paper002", show_default=True, help="Expression -> AU codebook of the AU maps.")
@click.option("--au-source", default="codebook", show_default=True,
              help="The dataset's AU maps: codebook, labels (its labelled AUs) or codebook+labels.")
@click.option("--data-opt", "data_opts", multiple=True, metavar="NAME=VALUE", help="A dataset reader option, repeatable.")
@click.option("--landmarks", default="dlib", show_default=True, help="Landmark backend that finds the faces of --images.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Where --images overlays and predictions.csv go (default FER_ORCH_HOME/audit/MODEL).")
@click.option("--experiment", default="fer-orch", show_default=True, help="MLflow experiment of the audit runs.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, or auto.")
@click.option("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray).")
@click.option("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite under FER_ORCH_HOME).")
@click.option("--num-actors", type=int, default=None, help="Parallel actors (default: one per CPU); 0: in this process.")
def audit(models, runs, datasets, images, weights, arch, classes, input_spec, layers, cam_class, jobs, probes, faith_n, codebook,
          au_source, data_opts, landmarks, out, experiment, device, address, tracking_uri, num_actors) -> None:
    """Audit a trained FER network: CL, CAM-COS (both definitions), faithfulness, with 95% intervals; or photos."""
    from orchestrator import tracking
    from orchestrator.audit import AuditSpec, audit_runs
    from orchestrator.config import check_experiment_name

    check_experiment_name(experiment)
    uri = tracking.resolve_uri(tracking_uri)
    from orchestrator.actors import trained_runs

    names = list(parse_list(models))
    for r in parse_list(runs):  # a grid parent: its trials with weights (the others are skipped, with a warning)
        names += [f"run:{t}" for t in trained_runs(r, uri, lambda m: click.secho(f"warning: {m}", fg="yellow", err=True))]
    opts = {k: v for k, v in dict(weights=weights, arch=arch, classes=classes, input=input_spec, layers=layers).items() if v}
    spec = AuditSpec(model_options=opts, cam_class=cam_class, codebook=codebook, au_source=au_source,
                     data_options=parse_data_opts(data_opts), faith_n=faith_n, jobs=tuple(parse_list(jobs)),
                     probes=tuple(parse_list(probes)),
                     landmarks=landmarks, device=device, experiment=experiment, out=out)
    results = audit_runs(names, parse_list(datasets), list(images), spec, uri=uri, address=address,
                         num_actors=num_actors)
    failed = 0
    for r in results:
        if r["status"] != "ok":
            failed += 1
            click.secho(f"{r['model']} on {r['dataset']}: failed: {r['reason']}", fg="red", err=True)
        elif "rows" in r:
            click.echo(f"{r['model']} on {r['images']} (run {r['run_id'][:8]}):")
            for row in r["rows"]:
                if not row["face"]:
                    click.echo(f"  {row['file']:<24} no face found")
                else:
                    click.echo(f"  {row['file']:<24} {row['pred']:<10} p={row['prob']:.3f}  CAM-COS={_num(row['cam_cos'])}")
            click.echo(f"  overlays: {', '.join(f for f in r['files'] if f.endswith('.png'))}")
        else:
            iv, m = r["intervals"], r["metrics"]
            cells = [f"CL={iv['cl']['mean']:.1f}% [{iv['cl']['low']:.1f}, {iv['cl']['high']:.1f}]"]
            for k, title in (("cam_cos", "CAM-COS"), ("released_cam_cos", "CAM-COS (released)"),
                             ("deletion_cam", "deletion"), ("insertion_cam", "insertion")):
                if k in iv and math.isfinite(iv[k]["mean"]):
                    cells.append(f"{title}={iv[k]['mean']:.3f} [{iv[k]['low']:.3f}, {iv[k]['high']:.3f}]")
            if math.isfinite(m.get("gt_cam_cos", math.nan)):
                cells.append(f"GT CAM-COS={m['gt_cam_cos']:.3f}")
            click.echo(f"{r['model']} on {r['dataset']} (run {r['run_id'][:8]}): " + "  ".join(cells))
            for job, status in r.get("jobs", {}).items():
                click.echo(f"  job {job}: {status}")
    if failed:
        raise SystemExit(1)


COMMANDS: list = [audit]

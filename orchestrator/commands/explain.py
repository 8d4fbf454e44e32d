"""`fer-orch` commands: explain (papers 000, 001, 003, 004: what the filters see, why a face was misclassified)."""

from __future__ import annotations

import click

from orchestrator.options import parse_list


class _JobOption(click.Option):
    """``--job``, whose help lists the registered jobs, read only when the help is shown
    (loading the job registry imports torch, which ``fer-orch`` avoids at start-up)."""

    def get_help_record(self, ctx: click.Context):
        from fer_analysis.jobs import job_names
        from fer_analysis.registry import JOBS

        aliases = [f"{a} = {JOBS.meta(a)['alias_of']}" for a in JOBS.names() if a not in job_names()]
        self.help = (f"Job(s) to run, repeated or comma-separated: {', '.join(job_names())}"
                     + (f" (aliases: {', '.join(aliases)})" if aliases else "") + "; default: topn. See `fer-orch list jobs`.")
        return super().get_help_record(ctx)


@click.command("explain")
@click.option("--run", "run_id", required=True, help="Trial run id, or a grid's parent run id (explains all its trials).")
@click.option("--job", "jobs", cls=_JobOption, multiple=True, metavar="JOB")
@click.option("--layer", default=None, help="Tap layer for topn / filter-au (default: the deepest conv layer, e.g. conv3).")
@click.option("--top-n", type=int, default=None, help="topn / filter-au: images shown per filter [default: --n, else 10 as paper 001].")
@click.option("--cases", type=int, default=None, help="backtrack: pairs shown in the figure and the per-case table (the suppression test runs on every misclassified image) [default: --n].")
@click.option("--images", type=int, default=None, help="block-maps: test images shown per block [default: --n].")
@click.option("--n", type=int, default=None, help="Default of --top-n, --cases and --images (when not given: 10, 8 and 8).")
@click.option("--filters", type=int, default=10, show_default=True, help="Filters shown by topn / filter-au.")
@click.option("--max-images", type=int, default=2000, show_default=True,
              help="Training images scanned by topn / filter-au (0: the whole split).")
@click.option("--au-threshold", type=float, default=0.0, show_default=True, help="AU present when its intensity is above this.")
@click.option("--bins", type=int, default=5, show_default=True,
              help="filter-au: equal-frequency bins per filter of the KL histograms.")
@click.option("--min-count", type=int, default=20, show_default=True,
              help="filter-au: an AU is tested when at least this many samples (CK+: sequences) show it and as many do not.")
@click.option("--permutations", type=int, default=1000, show_default=True,
              help="filter-au: permutations of the AU labels for the null (0: raw KL only).")
@click.option("--au-frames", type=click.Choice(["expressive", "all"]), default="expressive", show_default=True,
              help="filter-au: the frames tested (expressive: neutral frames left out, so peak-vs-neutral is no AU).")
@click.option("--permute-within", type=click.Choice(["none", "class"]), default="none", show_default=True,
              help="filter-au: class: the null permutes AU labels only among units of one expression.")
@click.option("--gradcam-layers", multiple=True, metavar="LAYERS",
              help="block-maps: layers to draw Grad-CAM at (comma-separated or repeated); default: the paper's "
                   "blocks (light-cnn: batchnorm_1, conv2d_4, conv2d_6 as in paper 004 Fig. 2; else layers 1..5).")
@click.option("--compare-run", default=None, metavar="RUN_ID",
              help="backtrack: a second trial run (e.g. an identity run) backtracked on the same test images (paper 003).")
@click.option("--compare-images", type=int, default=256, show_default=True,
              help="backtrack --compare-run: test images backtracked through both runs.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, or auto (GPU actors where the cluster has GPUs).")
@click.option("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray).")
@click.option("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite under FER_ORCH_HOME).")
@click.option("--num-actors", type=int, default=None,
              help="Parallel actors (default: one per CPU, or one per GPU); 0: run in this process without Ray.")
@click.option("--data-opt", "data_opts", multiple=True, metavar="NAME=VALUE",
              help="A reader option over the run's own data options, repeatable (e.g. --data-opt fold=3).")
def explain(run_id, jobs, layer, top_n, cases, images, n, filters, max_images, au_threshold, bins, min_count,
            permutations, au_frames, permute_within, gradcam_layers, compare_run, compare_images, device, address,
            tracking_uri, num_actors, data_opts) -> None:
    """Explain trained runs: top-N patches per filter, filter<->AU divergences, backtracking, Grad-CAM per block."""
    from orchestrator.options import parse_data_opts
    from orchestrator.explain import ExplainSpec, explain_runs

    extra = {"data_options": parse_data_opts(data_opts)} if data_opts else {}  # applied by the data loading
    spec = ExplainSpec(jobs=parse_list(jobs) or ("topn",), layer=layer, top_n=top_n, cases=cases, images=images,
                       n=n, filters=filters, max_images=max_images or None, au_threshold=au_threshold, bins=bins,
                       min_count=min_count, permutations=permutations, au_frames=au_frames,
                       permute_within=permute_within, gradcam_layers=parse_list(gradcam_layers) or None, compare_run=compare_run,
                       compare_images=compare_images, device=device, **extra)

    def warn(message: str) -> None:
        click.secho(f"warning: {message}", fg="yellow", err=True)

    results = explain_runs(run_id, spec, uri=tracking_uri, address=address, num_actors=num_actors, warn=warn)
    failed = 0
    for r in results:
        head = f"run {r['run_id'][:8]} {r['job']:<10}"
        if r["status"] == "ok":
            shown = ", ".join(f"{k}={v:.3g}" for k, v in list(r["metrics"].items())[:4])
            click.echo(f"{head} ok       -> explain/{r['job']}/  {shown}")
        elif r["status"] == "skipped":
            click.secho(f"{head} skipped: {r['reason']}", fg="yellow")
        else:
            failed += 1
            click.secho(f"{head} failed: {r['reason']}", fg="red", err=True)
    if failed:
        raise SystemExit(1)


COMMANDS: list = [explain]

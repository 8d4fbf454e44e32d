"""`fer-orch` commands: probe (paper 004: identity, valence/arousal and expression across layers)."""

from __future__ import annotations

import click

from orchestrator.options import parse_data_opts, parse_list


@click.command("probe")
@click.option("--run", "run_id", required=True, help="Trial run id, or a grid's parent run id (probes all its trials).")
@click.option("--untrained-control", is_flag=True, help="Also probe the same architecture untrained (same seed).")
@click.option("--layers", multiple=True, help="Layer names to probe (comma-separated or repeated); default: all the model's tap layers (many for the seed nets; paper 004's Keras names on light-cnn, e.g. conv2d_4 = post-ELU, out_layer = softmax) and the logits; `input` adds the images themselves (paper 004 Fig. 3a-b).")
@click.option("--dataset", default=None, help="Probe on this dataset (a DATASETS name) instead of the run's own.")
@click.option("--split", type=click.Choice(["test", "val", "train", "all"]), default="test", show_default=True,
              help="Split of the probe set; all: train, val and test together (datasets read for analysis only).")
@click.option("--n-samples", type=int, default=1000, show_default=True, help="Probe-set size (all of the split when smaller).")
@click.option("--sampling", type=click.Choice(["identity", "random"]), default="identity", show_default=True,
              help="identity: the same number of rows per identity, evenly spaced within each (every k-th frame of a "
                   "subject's video); random: a seeded random sample.")
@click.option("--big-layers", type=click.Choice(["pca", "pool"]), default="pca", show_default=True,
              help="Layers above 4,096 values per sample: exact PCA of the flattened layer (Gram matrix), or average pooling.")
@click.option("--pca-memory-mb", type=float, default=1024, show_default=True,
              help="Activations held at once while the Gram matrices of big layers are accumulated.")
@click.option("--probes", "probe_names", multiple=True, help="Probes to run (default: silhouette, valence-arousal, maps, faces, correct; `fer-orch list probes`).")
@click.option("--n-pcs", type=int, default=10, show_default=True, help="Principal components before silhouette (paper 004: 10).")
@click.option("--umap/--no-umap", default=True, show_default=True, help="Draw UMAP maps (the slowest part).")
@click.option("--umap-max-samples", type=int, default=2000, show_default=True)
@click.option("--compare", default=None, help="A second trial run id: plot both silhouette curves and log the differences.")
@click.option("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray).")
@click.option("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite under FER_ORCH_HOME).")
@click.option("--num-actors", type=int, default=None,
              help="Parallel probe actors (default: one per CPU, or one per GPU; at most one per run); 0: run in this process without Ray.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, or auto (GPU actors where the cluster has GPUs).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--data-opt", "data_opts", multiple=True, metavar="NAME=VALUE",
              help="A reader option of the probed dataset, repeatable (e.g. --data-opt every=5).")
def probe(run_id, untrained_control, layers, dataset, split, n_samples, sampling, big_layers, pca_memory_mb,
          probe_names, n_pcs, umap, umap_max_samples, compare, address, tracking_uri, num_actors, device,
          seed, data_opts) -> None:
    """Probe trained runs layer by layer: silhouette by identity/expression, PCA/UMAP maps, valence/arousal."""
    from fer_analysis.probes import metric_key
    from orchestrator.probe import DEFAULT_PROBES, ProbeSpec, probe_runs

    spec = ProbeSpec(
        layers=parse_list(layers) or None,
        probes=parse_list(probe_names) or DEFAULT_PROBES,
        dataset=dataset,
        split=split,
        n_samples=n_samples,
        sampling=sampling,
        big=big_layers,
        pca_memory_mb=pca_memory_mb,
        untrained_control=untrained_control,
        n_pcs=n_pcs,
        umap=umap,
        umap_max_samples=umap_max_samples,
        seed=seed,
        device=device,
        **({"data_options": parse_data_opts(data_opts)} if data_opts else {}),  # applied by the data loading
    )
    out = probe_runs(run_id, spec, compare=compare, uri=tracking_uri, address=address, num_actors=num_actors,
                     warn=lambda m: click.secho(f"warning: {m}", fg="yellow", err=True))
    for rid, res in out["results"].items():
        m = res["metrics"]
        click.secho(f"run {rid}: {res['n_samples']} samples, layers {', '.join(res['layers'])}", bold=True)
        ps = res.get("probe_set") or {}
        if ps:
            click.echo(f"  probe set: {ps['rows']} rows of {ps.get('dataset', '?')} ({ps['split']} split) from "
                       f"{ps['identities']} identities, {ps['rows_per_identity_min']}-{ps['rows_per_identity_max']} "
                       f"each ({ps['sampling']} sampling)")
        for layer in res["layers"]:
            key = metric_key("silhouette_identity", layer)
            if key in m:
                expr = m[metric_key("silhouette_expression", layer)]
                click.echo(f"  {layer:<24} identity {m[key]:+.3f}   expression {expr:+.3f}")
        if "va_PC1_valence_r" in m:
            click.echo(f"  PC1~valence r={m['va_PC1_valence_r']:+.3f}   PC2~arousal r={m.get('va_PC2_arousal_r', float('nan')):+.3f}")
        if "correct_n" in m:
            click.echo(f"  predictions on the probe set: {m['correct_n']:.0f} correct, {m['wrong_n']:.0f} wrong, "
                       f"{m['correct_unlabelled_n']:.0f} unlabelled"
                       + (f", {m['correct_outside_n']:.0f} of an expression the network has no output for"
                          if "correct_outside_n" in m else ""))
    for rid, cmp in out["compare"].items():
        cross = ", ".join(f"{c['run']}: {c['crossover_layer']}" for c in cmp["crossover"])
        click.echo(f"compare {rid[:8]} vs {cmp['other'][:8]}: expression overtakes identity at {cross}")
    for rid, msg in out["failed"].items():
        click.secho(f"run {rid} failed: {msg}", fg="red", err=True)
    if out["failed"]:
        raise SystemExit(1)


COMMANDS: list = [probe]

"""Post-hoc science on trained models: explainers, explanation jobs, filter/AU statistics,
backtracking, layer probes (registries in ``fer_analysis.registry``)."""

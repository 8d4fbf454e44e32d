"""Post-hoc science on trained models: explainers, filter/AU statistics, backtracking, probes."""

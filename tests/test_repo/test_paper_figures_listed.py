"""The reproduction pages list every table and figure of the papers they cover, each produced
(with the `fer-orch` command that makes it) or not produced (with why), and every command they
give there is run through the real CLI by a test named below, whose source holds each of the
command's words (placeholders such as RUN and dataset names' synthetic stand-ins aside)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Every table and figure of each paper, read off the papers' text.
PAPERS = {
    "reproducing-seed-papers.md": {
        "Paper 001": {"Table": range(1, 5), "Fig": range(1, 6)},
        "Paper 003": {"Table": range(1, 4), "Fig": range(1, 12)},
        "Paper 004": {"Table": range(1, 2), "Fig": range(1, 8)},
    },
    "reproducing-paper-002.md": {"Paper 002": {"Table": range(1, 4), "Fig": range(1, 12)}},
}

SEED = "tests/test_orchestrator/test_seed_paper_commands.py::"
P002_RUN = ("tests/test_orchestrator/test_paper002_command.py::"
            "test_paper_released_grid_and_report_on_synthetic_rafdb_affectnet")
# documented command -> the tests that run it through the CLI
RUN_BY = {
    "fer-orch explain --run PARENT --job topn": [SEED + "test_paper_001_commands_on_synthetic_ckplus"],
    "fer-orch explain --run PARENT --job filter-au": [SEED + "test_paper_001_commands_on_synthetic_ckplus"],
    "fer-orch grid --preset khorrami2015 --datasets ckplus": [SEED + "test_paper_001_commands_on_synthetic_ckplus"],
    "fer-orch grid --preset khorrami2015 --datasets ckplus --data-opt classes=6":
        [SEED + "test_paper_001_commands_on_synthetic_ckplus"],
    "fer-orch grid --preset fang2017": [SEED + "test_paper_003_commands_on_synthetic_rafd"],
    "fer-orch grid --preset fang2017-identity": [SEED + "test_paper_003_commands_on_synthetic_rafd"],
    "fer-orch explain --run RUN --job backtrack": [SEED + "test_paper_003_commands_on_synthetic_rafd"],
    "fer-orch explain --run EXPRESSION_RUN --job backtrack --compare-run IDENTITY_RUN":
        [SEED + "test_paper_003_commands_on_synthetic_rafd"],
    "fer-orch grid --preset devanand-t": [SEED + "test_paper_004_nn1_on_fer2013s_layout"],
    "fer-orch grid --preset devanand-t --data-opt classes=happiness,sadness,neutral --experiment nn1":
        [SEED + "test_paper_004_nn1_on_fer2013s_layout"],
    "fer-orch probe --run RUN --untrained-control": [SEED + "test_probe_figures_faces_control_maps_and_correct"],
    "fer-orch probe --run RUN --dataset disfa": [SEED + "test_probe_on_disfa_and_kdef_draws_across_identities"],
    "fer-orch probe --run RUN --dataset kdef": [SEED + "test_probe_figures_faces_control_maps_and_correct"],
    "fer-orch probe --run RUN --dataset kdef --split all": [SEED + "test_probe_figures_faces_control_maps_and_correct",
                                                            SEED + "test_probe_on_disfa_and_kdef_draws_across_identities"],
    "fer-orch probe --run RUN --dataset kdef --probes valence-arousal":
        [SEED + "test_probe_on_disfa_and_kdef_draws_across_identities"],
    "fer-orch explain --run RUN --job block-maps": [SEED + "test_block_maps_on_the_light_cnn"],
    "fer-orch explain --job block-maps": [SEED + "test_block_maps_on_the_light_cnn"],
    "fer-orch data show --dataset rafdb --out faces.png":
        ["tests/test_orchestrator/test_data_cli.py::test_show_writes_png_with_true_au_panels"],
    "fer-orch list codebooks": ["tests/test_orchestrator/test_data_cli.py::test_codebooks_listed_by_cli"],
    # offline with --print-config, and for real on the stand-ins (64 px, no ImageNet weights, one epoch)
    "fer-orch grid --preset paper-released --datasets rafdb,affectnet":
        ["tests/test_orchestrator/test_paper002_profiles.py::test_print_config_shows_every_trial_offline", P002_RUN],
    "fer-orch grid --preset khorrami2015 --datasets tfd":
        ["tests/test_orchestrator/test_seed_paper_commands_packed.py::test_paper_001_table_1_on_synthetic_tfd"],
    "fer-orch report": ["tests/test_orchestrator/test_report.py::test_report_cli", P002_RUN],
}
# documented commands no test runs yet, and why
NOT_RUN = {
}
NOT_PRODUCED = re.compile(r"\*\*not (produced|reproduced)\*\*: \S+ \S+")
ITEM = re.compile(r"\b(Tables?|Figs?\.)\s*((?:\d+[a-z]?(?:-\d+[a-z]?)?)(?:,\s*\d+[a-z]?(?:-\d+[a-z]?)?)*)")


def items(cell: str) -> set[tuple[str, int]]:
    """('Table', 1), ('Fig', 6), ... named in a table cell: "Figs. 6-9", "Fig. 2d, Fig. 6a", "Tables 1-3"."""
    out = set()
    for kind, nums in ITEM.findall(cell):
        kind = "Table" if kind.startswith("Table") else "Fig"
        for part in nums.split(","):
            lo, _, hi = part.strip().partition("-")
            lo_n, hi_n = int(re.match(r"\d+", lo).group()), int(re.match(r"\d+", hi or lo).group())
            out |= {(kind, k) for k in range(lo_n, hi_n + 1)}
    return out


def rows(doc: str, section: str) -> list[tuple[str, str]]:
    """The (paper, fer-orch) rows of the `| in the paper | fer-orch |` table in ``## <section>...``."""
    text = (ROOT / "docs" / doc).read_text()
    body = re.search(rf"^## {re.escape(section)}.*?$(.*?)(?=^## |\Z)", text, re.S | re.M).group(1)
    out = []
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) >= 2 and cells[0] != "in the paper" and not set(cells[0]) <= set("-"):
            out.append((cells[0], "|".join(cells[1:])))
    return out


def commands(cell: str) -> list[str]:
    return [c for c in re.findall(r"`([^`]+)`", cell) if c.startswith("fer-orch ")]


def all_rows():
    for doc, papers in PAPERS.items():
        for paper in papers:
            for row in rows(doc, paper):
                yield doc, paper, row


def test_every_table_and_figure_is_listed():
    for doc, papers in PAPERS.items():
        for paper, expected in papers.items():
            listed = set().union(*(items(r[0]) for r in rows(doc, paper)))
            want = {(kind, k) for kind, ks in expected.items() for k in ks}
            assert want <= listed, f"{doc}, {paper}: not listed {sorted(want - listed)}"


def test_every_row_is_produced_with_a_command_or_says_why_not():
    for doc, paper, (item, how) in all_rows():
        assert commands(how) or NOT_PRODUCED.search(how), f"{doc}, {paper}: '{item}' neither names a command nor why not"


def _function_source(ref: str) -> str:
    path, name = ref.split("::")
    src = (ROOT / path).read_text()
    fn = next((n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.FunctionDef) and n.name == name), None)
    assert fn is not None, f"{ref} does not exist"
    return ast.get_source_segment(src, fn)


def _words(cmd: str) -> list[str]:
    """The words a test must hold: subcommands, flags and values, less the program name, ALL-CAPS
    placeholders and the output file (``--out``)."""
    words = cmd.split()[1:]
    return [w for i, w in enumerate(words) if not re.fullmatch(r"[A-Z_]+", w) and (i == 0 or words[i - 1] != "--out")]


def test_every_documented_command_is_run_by_a_named_test():
    documented = {c for _, _, (_, how) in all_rows() for c in commands(how)}
    assert documented == set(RUN_BY) | set(NOT_RUN), (
        f"not mapped to a test: {sorted(documented - set(RUN_BY) - set(NOT_RUN))}; "
        f"no longer documented: {sorted((set(RUN_BY) | set(NOT_RUN)) - documented)}")
    for cmd, tests in RUN_BY.items():
        source = "\n".join(_function_source(t) for t in tests)
        missing = [w for w in _words(cmd) if w not in source]
        assert not missing, f"`{cmd}`: {', '.join(tests)} never uses {missing}"


def test_the_item_parser():
    assert items("Figs. 6-9: per-class") == {("Fig", k) for k in (6, 7, 8, 9)}
    assert items("Fig. 2d, Fig. 6a: 21 faces") == {("Fig", 2), ("Fig", 6)}
    assert items("Fig. 1, Figs. 3, 4: top-N") == {("Fig", 1), ("Fig", 3), ("Fig", 4)}
    assert items("Table 4, Fig. 5: KL") == {("Table", 4), ("Fig", 5)}
    assert items("Table 1a, NN2 (7 classes)") == {("Table", 1)}

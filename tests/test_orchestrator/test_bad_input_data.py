"""Bad input in datasets, reports, tracking URIs and devices (docs/bad-input.md): each case
through the real `fer-orch` command line where a command reaches it, else at the reader
that reads the file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from orchestrator.cli import main


def _cli(*args: str, **kw):
    return CliRunner().invoke(main, list(args), **kw)


def _one_sentence(r, *fragments: str) -> str:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output, r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, r.output
    for f in fragments:
        assert f in errors[0], r.output
    return errors[0]


def make_rafdb(root: Path, lines: list[str] | None = None, *, n_train: int = 7, n_test: int = 7,
               encoding: str = "utf-8", image=None) -> Path:
    """A tiny RAF-DB layout: ``lines`` of the label file (default: n_train + n_test images,
    labels 1..7) and a 24 px image per listed name (``image(path)`` writes it)."""
    rng = np.random.default_rng(0)
    if lines is None:
        lines = [f"{s}_{i:05d}.jpg {i % 7 + 1}" for s, n in (("train", n_train), ("test", n_test)) for i in range(n)]
    (root / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (root / "Image" / "aligned").mkdir(parents=True, exist_ok=True)
    for line in lines:
        stem = Path(line.split()[0]).stem
        path = root / "Image" / "aligned" / f"{stem}_aligned.jpg"
        if image is not None:
            image(path)
        else:
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(path, format="JPEG")
    (root / "EmoLabel" / "list_patition_label.txt").write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return root


# ----------------------------------------------------------------------------- label files
def test_image_path_outside_the_dataset_root_is_refused_before_the_file_is_looked_at(tmp_path):
    """RAF-DB builds ``Image/aligned/<stem>_aligned.jpg`` from a line (no way out); the
    helper every reader adds rows with refuses a path leading out of the root."""
    from fer_models.data.manifest import Manifest, Sample
    from fer_models.data.readers import add_if_exists
    from fer_models.errors import DatasetError

    root = make_rafdb(tmp_path / "raf")
    secret = tmp_path / "secret_aligned.jpg"
    secret.write_bytes(b"x")
    m = Manifest(dataset="rafdb", root=root, samples=[])
    outside = Sample(path=str(root / "Image" / ".." / ".." / "secret_aligned.jpg"), split="train", label=0)
    with pytest.raises(DatasetError, match="lies outside the dataset root"):
        add_if_exists(m, outside)
    assert add_if_exists(m, Sample(path=str(root / "Image" / "aligned" / "train_00000_aligned.jpg"), split="train",
                                   label=0))
    label = root / "EmoLabel" / "list_patition_label.txt"
    label.write_text(label.read_text() + "train_../../../../secret.jpg 1\n")
    _one_sentence(_cli("preprocess", "--dataset", "rafdb", "--root", str(root)), "restore the original label file")


def test_affectnet_row_naming_a_file_outside_the_root_is_one_sentence(tmp_path, make_affectnet):
    root = make_affectnet(tmp_path / "aff")
    csv = next(root.rglob("training.csv"))
    rows = csv.read_text().splitlines()
    rows.append(rows[1].replace(rows[1].split(",")[0], "../../../../../etc/hostname", 1))
    csv.write_text("\n".join(rows) + "\n")
    r = _cli("preprocess", "--dataset", "affectnet", "--root", str(root))
    _one_sentence(r, "lies outside the dataset root", "etc/hostname")


def test_duplicate_label_lines_are_kept_once_or_dropped_and_counted(tmp_path):
    from fer_models.data.readers import read_dataset
    from fer_models.data.readers._base import DUPLICATE_CONFLICT, DUPLICATE_KEPT_ONCE

    lines = [f"train_{i:05d}.jpg {i % 7 + 1}" for i in range(14)] + [f"test_{i:05d}.jpg 1" for i in range(3)]
    lines += ["train_00001.jpg 2", "train_00001.jpg 2",  # identical twice more: kept once
              "train_00003.jpg 5", "train_00003.jpg 6"]  # three labels for one image: dropped
    m = read_dataset("rafdb", make_rafdb(tmp_path / "raf", lines), val_fraction=0.0)
    paths = [s.path for s in m.samples]
    assert len(paths) == len(set(paths)) == 13 + 3
    assert not any(p.endswith("train_00003_aligned.jpg") for p in paths)
    assert m.skipped[DUPLICATE_KEPT_ONCE] == 2 and m.skipped[DUPLICATE_CONFLICT] == 3
    assert "duplicate" in m.summary()


def test_utf16_label_file_is_read_and_other_bytes_are_one_sentence(tmp_path):
    from fer_models.data.readers import read_dataset
    from fer_models.errors import DatasetError

    m = read_dataset("rafdb", make_rafdb(tmp_path / "u16", encoding="utf-16"))
    assert len(m.samples) == 14
    root = make_rafdb(tmp_path / "latin")
    label = root / "EmoLabel" / "list_patition_label.txt"
    label.write_bytes(label.read_bytes() + b"train_\xe9t\xe9.jpg 1\n")
    with pytest.raises(DatasetError, match="is not UTF-8 text"):
        read_dataset("rafdb", root)
    r = _cli("preprocess", "--dataset", "rafdb", "--root", str(root))
    _one_sentence(r, "is not UTF-8 text")


def test_training_split_of_only_unreadable_images_is_one_sentence(tmp_path):
    def corrupt(path: Path) -> None:
        path.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")

    root = make_rafdb(tmp_path / "raf", image=corrupt)
    r = _cli("train", "--dataset", "rafdb", "--root", str(root), "--method", "cam", "--backbone", "resnet-tiny",
             "--epochs", "1", "--image-size", "32", "--device", "cpu", "--val-fraction", "0")
    _one_sentence(r, "the train split of cache", "holds no image (14 rows unreadable", "failures.csv")


# ----------------------------------------------------------------------------- image files
def test_16_bit_png_keeps_its_contrast(tmp_path):
    from fer_models.data.images import load_image

    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (16, 1))
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    arr = load_image(tmp_path / "g16.png")
    assert arr.shape == (16, 64, 3) and arr.dtype == np.uint8
    assert arr[0, 0, 0] == 0 and arr[0, -1, 0] == 255 and 120 <= arr[0, 32, 0] <= 135  # was: all 255
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # red
    cmyk.save(tmp_path / "c.jpg")
    assert tuple(load_image(tmp_path / "c.jpg")[4, 4]) > (200, 0, 0)


# ----------------------------------------------------------------------------- report --out
@pytest.fixture
def store_with_a_grid(mlflow_uri):
    from orchestrator import tracking
    from tests.test_orchestrator.test_report import _trial

    exp = tracking.ensure_experiment("rep", mlflow_uri)
    gp = tracking.create_grid_run(exp, "grid", {tracking.STUDY_TAG: "grid", "lambda": "2"}, mlflow_uri)
    trials = [_trial(mlflow_uri, exp, gp, "grid", "cam", "synthetic-rafdb", au, 0, {"cl": 80.0 + au, "cam_cos": 0.5})
              for au in (False, True)]
    tracking.log_grid_artifacts(gp, "x: 1\n", trials, mlflow_uri)
    tracking.end_run(gp, "FINISHED", mlflow_uri)
    return mlflow_uri, gp


def test_report_uploads_only_the_files_it_wrote(store_with_a_grid, tmp_path):
    from orchestrator import tracking

    uri, gp = store_with_a_grid
    out = tmp_path / "home-like"
    (out / ".ssh").mkdir(parents=True)
    (out / ".ssh" / "id_rsa").write_text("PRIVATE KEY")
    (out / "notes.txt").write_text("mine")
    r = _cli("report", "--experiment", "rep", "--tracking-uri", uri, "--out", str(out))
    assert r.exit_code == 0, r.output
    c = tracking.client(uri)
    uploaded = {a.path for a in c.list_artifacts(gp, "report")}
    assert "report/report.md" in uploaded and "report/table1.csv" in uploaded
    assert not any("ssh" in p or "notes" in p for p in uploaded), uploaded
    assert (out / "report.md").is_file() and (out / "notes.txt").read_text() == "mine"
    assert not list(out.glob(".fer-orch-report-*"))  # the staging folder is gone


@pytest.mark.parametrize("name", ["../../x", "", "a/b", ".."])
def test_experiment_name_that_is_no_folder_name_is_refused(name, tmp_path):
    home = Path(os.environ["FER_ORCH_HOME"])
    _one_sentence(_cli("report", "--experiment", name), "experiment name (--experiment)")
    _one_sentence(_cli("grid", "--experiment", name, "--print-config"), "experiment name (--experiment)")
    assert not (home.parent / "x").exists() and not (home / "x").exists()


# ----------------------------------------------------------------------------- tracking URIs
def test_password_in_the_tracking_uri_is_never_printed_nor_stored(tmp_path):
    """An unreachable server with a password: the sentence hides it; the grid config the
    grid logs (grid.yaml) holds the URI without it, and MLflow gets it from its variables."""
    r = _cli("grid", "--tracking-uri", "http://alice:hunter2@127.0.0.1:9/", "--epochs", "1")
    _one_sentence(r, "MLflow tracking server http://127.0.0.1:9/ is unreachable")
    assert "hunter2" not in r.output
    from orchestrator.commands.grid import build_grid_config

    g = build_grid_config(tracking_uri="http://alice:hunter2@127.0.0.1:9/")
    assert g.tracking_uri == "http://127.0.0.1:9/" and "hunter2" not in g.to_yaml()
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "alice" and os.environ["MLFLOW_TRACKING_PASSWORD"] == "hunter2"
    r = _cli("grid", "--tracking-uri", "mysql://bob:s3cret@127.0.0.1/db", "--epochs", "1")
    assert "s3cret" not in r.output
    from orchestrator.config import GridConfig

    assert "s3cret" not in GridConfig(tracking_uri="mysql://bob:s3cret@host/db").to_yaml()  # the API's grid.yaml


@pytest.fixture
def not_mlflow_server():
    """A local HTTP server that is not MLflow (404 HTML for everything)."""
    import http.server
    import threading

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b"<html>not found</html>")

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


def test_tracking_uris_that_cannot_work_are_one_sentence(not_mlflow_server):
    for uri, sentence in [("http://:99999", "is malformed"),
                          ("htp://host", "unknown scheme 'htp'"),
                          ("mssql://u@host/db", "database driver ('pyodbc')"),
                          (not_mlflow_server, "is not an MLflow tracking server")]:
        _one_sentence(_cli("report", "--tracking-uri", uri), sentence)


# ----------------------------------------------------------------------------- devices
@pytest.fixture
def a_trained_trial(mlflow_store, log_trial):
    from fer_models.config import TrainConfig
    from fer_models.methods import build_model
    from orchestrator import tracking

    c, exp = mlflow_store.client, mlflow_store.exp
    parent = c.create_run(exp, tags={tracking.KIND_TAG: "grid"}).info.run_id
    cfg = TrainConfig(method="cam", backbone="resnet-tiny", au=False)
    return mlflow_store.uri, log_trial(c, exp, parent, cfg, build_model(cfg).state_dict(), "good")


def test_explain_on_cuda_without_a_gpu_says_so_and_does_not_blame_the_weights(a_trained_trial):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    uri, run = a_trained_trial
    r = _cli("explain", "--run", run, "--tracking-uri", uri, "--device", "cuda", "--num-actors", "0")
    sentence = _one_sentence(r, "--device cuda was asked for, but this machine has no CUDA GPU", "--device cpu")
    assert "damaged" not in sentence and "train the run again" not in sentence
    _one_sentence(_cli("explain", "--run", run, "--tracking-uri", uri, "--device", "nope"), "device (--device)")


# ----------------------------------------------------------------------------- options
_TRAIN = ("train", "--dataset", "synthetic-rafdb", "--method", "cam", "--backbone", "resnet-tiny", "--device", "cpu")


@pytest.mark.parametrize("args, sentence", [
    (("--seed", "99999999999999999999"), "seed (--seed) must be <= 4.29497e+09"),
    (("--seed", "-1"), "seed (--seed) must be >= 0"),
    (("--device", "nope"), "device (--device) must be one of auto, cpu, cuda"),
    (("--image-size", "60000"), "data.image_size (--image-size) must be <= 1024"),
    (("--method", "acol", "--method-kw", "threshold=abc"), "option threshold (--method-kw) must be a finite number"),
    (("--layers", "5,5"), "layers (--layers) lists a layer twice"),
    (("--no-au", "--lambda", "5"), "--lambda 5 weighs the AU loss, which --no-au turns off"),
])
def test_train_option_mistakes_are_one_sentence_before_any_data_work(args, sentence):
    home = Path(os.environ["FER_ORCH_HOME"])
    _one_sentence(_cli(*_TRAIN, *args), sentence)
    assert not (home / "data").exists() and not (home / "cache").exists()


@pytest.mark.parametrize("args, sentence", [
    (("preprocess", "--dataset", "synthetic-rafdb", "--map-size", "0"), "data.map_size (--map-size) must be >= 2"),
    (("grid", "--methods", "cam,CAM", "--print-config"), "--methods lists 'cam' twice"),
    (("grid", "--seeds", "0,0", "--print-config"), "--seeds lists 0 twice"),
    (("ablate", "lambda", "--lam", "5", "--print-config"), "`fer-orch ablate lambda` does not use --lam"),
    (("ablate", "layers", "--methods", "gradcam", "--print-config"), "`fer-orch ablate layers` does not use --methods"),
])
def test_grid_and_ablate_refuse_duplicates_and_ignored_options(args, sentence):
    _one_sentence(_cli(*args), sentence)


def test_ablate_au_source_still_takes_methods():
    r = _cli("ablate", "au-source", "--methods", "cam", "--print-config")
    assert r.exit_code == 0 and "# au-source:" in r.output, r.output


def test_tunes_warning_about_result_files_it_was_told_not_to_write_is_dropped(caplog):
    import logging

    from orchestrator.commands.grid import quiet_tune_metrics_warning

    log = logging.getLogger("ray.tune.analysis.experiment_analysis")
    quiet_tune_metrics_warning()
    quiet_tune_metrics_warning()  # once is enough
    with caplog.at_level(logging.WARNING, logger=log.name):
        log.warning("Failed to fetch metrics for 2 trial(s):\n- t1: FileNotFoundError('... result.json ...')")
        log.warning("another warning")
    assert [r.getMessage() for r in caplog.records] == ["another warning"]


def test_data_show_checks_its_map_size():
    _one_sentence(_cli("data", "show", "--dataset", "synthetic-rafdb", "--map-size", "0"),
                  "data.map_size (--map-size) must be >= 2")

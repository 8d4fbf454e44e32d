"""Fuzzing the command line and the dataset readers with Hypothesis (docs/bad-input.md).

The property, for every generated input: **exit 0 with a correct result, or a non-zero exit
with one sentence and no traceback; nothing written outside the folders the command owns**
(FER_ORCH_HOME, and ``--out`` where given). For the readers: a correct manifest (paths
inside the dataset root, each image once, labels in range) or one ``FerOrchError``; for
images: an ``(H, W, 3)`` uint8 array or ``UnreadableImage``.

The commands run in process (click's ``CliRunner`` on the real ``orchestrator.cli.main``),
on dry paths that stop before any long work: ``grid`` / ``ablate --print-config``, and
``train`` / ``preprocess`` on a dataset root that does not exist (every option is checked
before the dataset is read, so a valid set of options ends in the missing-root sentence).

The default suite runs a fixed, small number of examples per property (``derandomize``:
the same examples on every run); ``pytest -m slow`` runs ``FUZZ_EXAMPLES`` (default 300)
random ones each.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from orchestrator.cli import main

FAST = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

#: examples run by each property in this process, reported by the slow tests
SEEN: dict[str, int] = {}

# ----------------------------------------------------------------------------- values
_bounds = [-(2**63), -1, 0, 1, 2, 7, 8, 255, 256, 1024, 1025, 2**31, 2**32 - 1, 2**32, 2**63, 10**20]
numbers = st.one_of(
    st.sampled_from(_bounds).map(str),
    st.integers(-10**6, 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e308", "1e-320", "-0.0", "0.5", "1e30", "0x10", "1_000"]),
)
odd_text = st.one_of(
    st.sampled_from(["", " ", "../../x", "/etc/passwd", "a/b", "..", ".", "~", "$HOME", "a,b,,c", "5+4+3",
                     "CAM", "cam,CAM", "true", "none", "null", "[1, 2]", "{a: 1}", "ñ", "😀", "a\tb",
                     "x" * 300, "--help", "-1"]),
    st.text(min_size=0, max_size=12),
)
#: no NUL: a shell cannot pass one in an argument (argv holds C strings), so none reaches the CLI
values = st.one_of(numbers, odd_text, st.sampled_from(["n_train=99999999999", "n_test=0", "image_size=100000",
                                                        "classes=nope", "fold=99", "threshold=abc", "alpha=nan"])
                   ).filter(lambda v: "\x00" not in v)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _check(r, sandbox: Path, before: set[str], owned: tuple[Path, ...]) -> str:
    """The property on one CLI result; returns its verdict ("ok" or "sentence").

    The sandbox is removed afterwards, pass or fail (hundreds of examples run per session)."""
    try:
        return _verdict(r, sandbox, before, owned)
    finally:
        shutil.rmtree(sandbox, ignore_errors=True)


def _verdict(r, sandbox: Path, before: set[str], owned: tuple[Path, ...]) -> str:
    out = r.output
    assert "Traceback" not in out, out
    assert r.exit_code in (0, 2), (r.exit_code, out, r.exception)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    if r.exit_code == 2:  # one sentence: ours, or click's usage error
        ours = [ln for ln in out.splitlines() if ln.startswith("error: ")]
        clicks = [ln for ln in out.splitlines() if ln.startswith("Error: ")]
        assert len(ours) + len(clicks) == 1, out
    new = {f for f in _files(sandbox) - before
           if not any((sandbox / f).resolve().is_relative_to(o.resolve()) for o in owned)}
    assert not new, f"written outside the command's folders: {sorted(new)[:5]}"
    return "ok" if r.exit_code == 0 else "sentence"


def _run(args: list[str]) -> tuple:
    """Run ``fer-orch args`` in a fresh sandbox (cwd) with FER_ORCH_HOME inside it."""
    sandbox = Path(tempfile.mkdtemp(prefix="fer-orch-fuzz-"))
    home = sandbox / "home"
    old_cwd, old_env = os.getcwd(), {k: os.environ.get(k) for k in ("FER_ORCH_HOME", "MLFLOW_TRACKING_URI")}
    os.environ["FER_ORCH_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.chdir(sandbox)
    try:
        before = _files(sandbox)
        r = CliRunner().invoke(main, [a.replace("{sandbox}", str(sandbox)) for a in args])
        return r, sandbox, before, home
    finally:
        os.chdir(old_cwd)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


TRAIN_OPTIONS = ["--lambda", "--layers", "--epochs", "--batch-size", "--lr", "--optimizer", "--image-size",
                 "--val-fraction", "--seed", "--device", "--method-kw", "--data-opt", "--target", "--au-source",
                 "--backbone", "--pretrained", "--out"]
GRID_OPTIONS = ["--datasets", "--methods", "--seeds", "--epochs", "--lam", "--experiment", "--cpus-per-trial",
                "--gpus-per-trial", "--max-concurrent", "--max-failures", "--data-opt", "--folds", "--au-source",
                "--trial-resources", "--preset"]
PRE_OPTIONS = ["--image-size", "--map-size", "--val-fraction", "--split-seed", "--codebook", "--landmarks",
               "--data-opt", "--workers", "--cache-root"]


def _option_sets(names: list[str]):
    return st.lists(st.tuples(st.sampled_from(names), values), min_size=1, max_size=3)


def _flatten(pairs) -> list[str]:
    return [x for k, v in pairs for x in (k, v)]


def _train_case(pairs) -> str:
    args = ["train", "--dataset", "rafdb", "--root", "{sandbox}/no-such-dataset", "--method", "cam",
            "--backbone", "resnet-tiny", *_flatten(pairs)]
    r, sandbox, before, home = _run(args)
    outs = [Path(v.replace("{sandbox}", str(sandbox))) for k, v in pairs if k == "--out"]
    outs = [o if o.is_absolute() else sandbox / o for o in outs]
    verdict = _check(r, sandbox, before, (home, *outs))
    assert r.exit_code == 2  # a missing dataset root can never train
    return verdict


def _grid_case(command: list[str], pairs) -> str:
    r, sandbox, before, home = _run([*command, *_flatten(pairs), "--print-config"])
    verdict = _check(r, sandbox, before, (home,))
    if r.exit_code == 0:  # a correct result: the trial counts of every study
        assert "# " in r.output and " trials" in r.output, r.output
    return verdict


def _preprocess_case(pairs) -> str:
    r, sandbox, before, home = _run(["preprocess", "--dataset", "rafdb", "--root", "{sandbox}/nope",
                                     *_flatten(pairs)])
    caches = [Path(v) if Path(v).is_absolute() else sandbox / v for k, v in pairs if k == "--cache-root"]
    verdict = _check(r, sandbox, before, (home, *caches))
    assert r.exit_code == 2
    return verdict


def _count(name: str) -> None:
    SEEN[name] = SEEN.get(name, 0) + 1


# ----------------------------------------------------------------------------- the CLI
@FAST
@given(pairs=_option_sets(TRAIN_OPTIONS))
def test_fuzz_train_options(pairs):
    _count("train")
    _train_case(pairs)


@FAST
@given(pairs=_option_sets(GRID_OPTIONS))
def test_fuzz_grid_options(pairs):
    _count("grid")
    _grid_case(["grid"], pairs)


@FAST
@given(study=st.sampled_from(["lambda", "layers", "au-source"]), pairs=_option_sets(GRID_OPTIONS))
def test_fuzz_ablate_options(study, pairs):
    _count("ablate")
    _grid_case(["ablate", study], pairs)


@FAST
@given(pairs=_option_sets(PRE_OPTIONS))
def test_fuzz_preprocess_options(pairs):
    _count("preprocess")
    _preprocess_case(pairs)


# ----------------------------------------------------------------------------- image files
def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header announces w x h pixels (a "decompression bomb" header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


@st.composite
def image_bytes(draw) -> bytes:
    kind = draw(st.sampled_from(["good", "truncated", "garbage", "empty", "huge-header", "flipped-byte"]))
    if kind == "garbage":
        return draw(st.binary(min_size=1, max_size=200))
    if kind == "empty":
        return b""
    if kind == "huge-header":
        return _png_header_only(draw(st.sampled_from([20000, 65535, 100000])), draw(st.sampled_from([20000, 65535])))
    mode = draw(st.sampled_from(["RGB", "L", "I;16", "CMYK", "RGBA", "LA", "P", "1", "I", "F"]))
    fmt = draw(st.sampled_from(["PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP"]))
    w, h = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16))
    elif mode in ("I", "F"):
        im = Image.fromarray(rng.integers(0, 65535, (h, w)).astype(np.int32 if mode == "I" else np.float32))
    else:
        im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    try:
        im.save(buf, format=fmt)
    except (OSError, ValueError, KeyError):  # a mode the format cannot store
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="PNG")
    data = buf.getvalue()
    if kind == "truncated":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if kind == "flipped-byte":
        i = draw(st.integers(0, len(data) - 1))
        return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
    return data


def _image_case(data: bytes) -> str:
    from fer_models.data.images import UnreadableImage, load_image

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "face.img"
        p.write_bytes(data)
        try:
            arr = load_image(p)
        except UnreadableImage as e:
            assert str(e).startswith(f"image {p} ") and "\n" not in str(e)
            return "sentence"
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3 and min(arr.shape[:2]) >= 1
        return "ok"


@FAST
@given(data=image_bytes())
def test_fuzz_image_files(data):
    _count("images")
    _image_case(data)


# ----------------------------------------------------------------------------- label files
_label_line = st.one_of(
    st.builds(lambda s, i, lab: f"{s}_{i:05d}.jpg {lab}", st.sampled_from(["train", "test"]), st.integers(0, 5),
              st.integers(-1, 9)),
    st.sampled_from(["", " ", "train_00001.jpg", "train_00001.jpg 1 2", "../../etc/passwd 1", "/abs/train_1.jpg 2",
                     "train_00001.jpg\t3", "train_00001.jpg 01", "train_00001.jpg ١", "test_00000.jpg 7\r"]),
    st.text(max_size=30),
)


def _reader_verdict(name: str, root: Path, labels_in_range: bool = False) -> str:
    """The readers' property on one generated dataset: one ``FerOrchError`` sentence ("sentence"),
    or a manifest whose paths are unique and inside ``root`` (and, if asked, whose labels are in
    range) ("ok")."""
    from fer_models.data.readers import read_dataset
    from fer_models.errors import FerOrchError

    try:
        m = read_dataset(name, root, val_fraction=0.0)
    except FerOrchError as e:
        assert "\n" not in str(e).strip()
        return "sentence"
    paths = [s.path for s in m.samples]
    assert len(paths) == len(set(paths))
    assert all(os.path.normpath(p).startswith(str(root)) for p in paths)
    if labels_in_range:
        assert all(0 <= s.label < m.num_classes for s in m.samples)
    return "ok"


def _rafdb_case(lines: list[str], encoding: str) -> str:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "raf"
        (root / "EmoLabel").mkdir(parents=True)
        img_dir = root / "Image" / "aligned"
        img_dir.mkdir(parents=True)
        for s in ("train", "test"):
            for i in range(6):
                Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(img_dir / f"{s}_{i:05d}_aligned.jpg", format="JPEG")
        text = "\n".join(lines) + "\n"
        try:
            data = text.encode(encoding)
        except UnicodeEncodeError:
            data = text.encode("utf-8")
        (root / "EmoLabel" / "list_patition_label.txt").write_bytes(data)
        return _reader_verdict("rafdb", root, labels_in_range=True)


@FAST
@given(lines=st.lists(_label_line, max_size=12), encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]))
def test_fuzz_rafdb_label_files(lines, encoding):
    _count("rafdb labels")
    _rafdb_case(lines, encoding)


_csv_field = st.one_of(st.sampled_from(["", "nan", "-2", "1e400", "0", "7", "12", "a", "1;2;3", '"', "../x.jpg",
                                        "/etc/hostname", "1/a.jpg", "1/../../../x.jpg"]), st.text(max_size=10))


def _affectnet_case(rows: list[list[str]]) -> str:
    import csv as _csv

    from tests.conftest import _make_affectnet

    with tempfile.TemporaryDirectory() as d:
        root = _make_affectnet(Path(d) / "aff")
        f = root / "Manually_Annotated_file_lists" / "training.csv"
        buf = io.StringIO()
        _csv.writer(buf).writerows(rows)
        f.write_text(f.read_text() + buf.getvalue())
        return _reader_verdict("affectnet", root)


@FAST
@given(rows=st.lists(st.lists(_csv_field, min_size=0, max_size=10), max_size=5))
def test_fuzz_affectnet_rows(rows):
    _count("affectnet rows")
    _affectnet_case(rows)


# ----------------------------------------------------------------------------- more, slowly
@pytest.mark.slow
@SLOW
@given(case=st.one_of(
    st.tuples(st.just("train"), _option_sets(TRAIN_OPTIONS)),
    st.tuples(st.just("grid"), _option_sets(GRID_OPTIONS)),
    st.tuples(st.sampled_from(["ablate lambda", "ablate layers", "ablate au-source"]), _option_sets(GRID_OPTIONS)),
    st.tuples(st.just("preprocess"), _option_sets(PRE_OPTIONS)),
))
def test_fuzz_cli_many(case):
    what, pairs = case
    _count(f"slow {what}")
    if what == "train":
        _train_case(pairs)
    elif what == "preprocess":
        _preprocess_case(pairs)
    else:
        _grid_case(what.split(), pairs)


@pytest.mark.slow
@SLOW
@given(data=image_bytes())
def test_fuzz_images_many(data):
    _count("slow images")
    _image_case(data)


@pytest.mark.slow
@SLOW
@given(lines=st.lists(_label_line, max_size=20), encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]))
def test_fuzz_rafdb_many(lines, encoding):
    _count("slow rafdb labels")
    _rafdb_case(lines, encoding)

"""The synthetic faces and the files written for them, pinned by hash.

A refactoring of the face renderer or of the layout writers must leave every pixel and every
byte as it was (a cache built on the old faces stays valid, and ``make grid`` reports the same
numbers); a change that is meant to alter them bumps ``synth.io.SYNTH_VERSION`` and these hashes.
The hashes depend on numpy's random streams and PIL's drawing, which are stable across releases.
"""

from __future__ import annotations

import hashlib

from fer_models.data import synth
from fer_models.data.synth.io import SYNTH_VERSION, write_dataset


def test_rendered_faces_are_pixel_identical():
    small = synth.generate(6, 48, seed=3, n_identities=2)
    large = synth.generate(3, 96, seed=5, n_identities=3, start=10)
    assert hashlib.sha256(small.images.tobytes()).hexdigest()[:16] == "59c8336ec119bb61"
    assert hashlib.sha256(large.images.tobytes()).hexdigest()[:16] == "c05ff0e715ca922c"
    assert SYNTH_VERSION == "5"


def test_written_layouts_are_byte_identical(tmp_path):
    want = {"rafdb": "c91b0bb0f893bb23", "affectnet": "a3a03e4d1b9b51ac"}
    for layout, digest in want.items():
        root = write_dataset(tmp_path / layout, layout, 5, 3, 32, 1, 2, progress=False, chunk=4)
        h = hashlib.sha256()
        for p in sorted(root.rglob("*")):
            if p.is_file() and p.name != "fer_orch_synth.json":  # the info file names the version
                h.update(p.relative_to(root).as_posix().encode())
                h.update(p.read_bytes())
        assert h.hexdigest()[:16] == digest, layout

"""synthetic-rafdb's test split: every face distinct, every label carried by the face's AUs.

A test CL on synthetic-rafdb is a count of these 350 faces. Two methods printing the same CL
could mean the split quantises the count (faces that look the same but carry different
labels, so that whatever a network predicts on such a group it gets the same number right);
these tests pin down that it does not: no two faces coincide at the networks' 32 px, and the
generator's own posterior of the expression given the drawn AUs
(``fer_models.data.synth.bayes``) recovers nearly every label. A generator whose codebook
gives two expressions the same AUs fails the same check (the control below).
"""

from __future__ import annotations

import numpy as np
import pytest

from fer_models.data import synth
from fer_models.data.au import Codebook, get_codebook
from fer_models.data.readers.synthetic import SyntheticRafDB
from fer_models.data.synth.bayes import label_posterior

D = SyntheticRafDB.defaults
FEAR, SURPRISE = 2, 5


def test_split(**kw) -> synth.SynthBatch:
    """The test faces of synthetic-rafdb as its reader generates them (after the train faces)."""
    return synth.generate(D["n_test"], D["image_size"], D["gen_seed"], D["n_identities"], start=D["n_train"], **kw)


test_split.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module")
def faces() -> synth.SynthBatch:
    return test_split()


def at_32px(images: np.ndarray) -> np.ndarray:
    """(N, 32*32*3) float64 (exact distances): 2x2 means of the 64 px faces (the CPU preset's input size)."""
    n, s = images.shape[:2]
    return images.reshape(n, s // 2, 2, s // 2, 2, 3).astype(np.float64).mean((2, 4)).reshape(n, -1)


def pairwise_sq(x: np.ndarray) -> np.ndarray:
    sq = (x * x).sum(1)
    d = sq[:, None] + sq[None] - 2 * x @ x.T
    np.fill_diagonal(d, np.inf)
    return d


def map_accuracy(post: np.ndarray, labels: np.ndarray) -> float:
    return float((post.argmax(1) == labels).mean())


def test_no_two_test_faces_coincide_at_the_networks_size(faces):
    d = pairwise_sq(at_32px(faces.images))
    nearest = d.min(1)
    # the closest pair is still a clearly different image: pose, lighting and noise are drawn per face
    assert nearest.min() > 0.2 * np.median(nearest)
    # and a face's nearest neighbour is no likelier than chance to share its label (identity
    # and pose dominate the pixels), so no group of look-alikes with mixed labels exists
    same = faces.labels[d.argmin(1)] == faces.labels
    assert same.mean() < 0.25


def test_labels_are_carried_by_the_drawn_aus(faces):
    post = label_posterior(faces.aus)
    own = post[np.arange(len(post)), faces.labels]
    assert (own > 0).all()  # every face is possible under its own label
    assert map_accuracy(post, faces.labels) >= 0.98  # the Bayes limit is near 100%, not near the CLs
    assert (post.max(1) < 0.99).mean() <= 0.02  # at most a few faces are ambiguous


def test_a_codebook_that_merges_two_expressions_fails_the_check(monkeypatch):
    """Control: with surprise drawn from fear's AUs the labels are no longer carried."""
    cb = get_codebook("paper002")
    merged = Codebook("merged", {**cb.aus_per_label, SURPRISE: cb.aus(FEAR)})
    monkeypatch.setattr(synth, "get_codebook", lambda name: merged)
    faces = test_split()
    post = label_posterior(faces.aus, merged)
    assert map_accuracy(post, faces.labels) < 0.95
    both = np.isin(faces.labels, (FEAR, SURPRISE))
    assert (post[both].max(1) < 0.99).all()  # every fear and surprise face is ambiguous

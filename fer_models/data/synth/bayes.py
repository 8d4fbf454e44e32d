"""How well the AUs the synthetic generator drew determine a face's expression label.

:func:`label_posterior` is the generator's own likelihood of each expression given one
face's AU intensities (:func:`fer_models.data.synth.sample_aus`), turned into a posterior
under the uniform prior the generator draws labels with. It uses which AUs are present and
the intensity ranges that separate codebook AUs (``[0.3, 1]``) from off-codebook noise
(``[0.1, 0.4]``), not the finer intensity densities, so its maximum-a-posteriori accuracy is
a lower bound of the Bayes accuracy from the AUs. It is the ceiling a network could reach
if it read every drawn AU from the pixels; the faces whose posterior is spread over several
expressions are the only ones whose label the face cannot carry.

Written here rather than taken from a library: it inverts this generator's sampling rules
(codebook AUs on with probability ``P_CODEBOOK_AU``, topped up to two, plus sparse noise).
"""

from __future__ import annotations

import itertools
from math import comb

import numpy as np

from fer_models.data import synth
from fer_models.data.au import AU_IDS, get_codebook
from fer_models.labels import NUM_CLASSES

CODEBOOK_MIN = 0.5 * 0.6  # the least intensity a codebook AU is drawn with
NOISE_RANGE = (0.1, 0.4)  # the intensities of off-codebook noise AUs
_EPS = 1e-6


def _on_set_prob(on: int, m: int, p: float) -> float:
    """P(the final codebook on-set is one given set of size ``on``) for a codebook of ``m`` AUs."""
    prob = p**on * (1 - p) ** (m - on)
    if on == 2:  # also reached by topping up zero or one drawn AU to two
        prob += (1 - p) ** m / comb(m, 2) + 2 * p * (1 - p) ** (m - 1) / (m - 1)
    return prob


def expression_likelihood(aus: np.ndarray, label: int, codebook="paper002") -> float:
    """P(the present AUs of ``aus`` (over ``AU_IDS``) | ``label``) under the generator's rules."""
    cb = list(get_codebook(codebook).aus(label))
    present = {AU_IDS[j]: float(v) for j, v in enumerate(aus) if v > 0}
    in_cb = [a for a in present if a in cb]
    n, p, q = len(AU_IDS), synth.P_CODEBOOK_AU, synth.P_NOISE_AU
    total = 0.0
    for r in range(len(in_cb) + 1):
        for on in map(set, itertools.combinations(in_cb, r)):
            if cb and len(on) < min(2, len(cb)):
                continue
            noise = [a for a in present if a not in on]
            if any(present[a] < CODEBOOK_MIN - _EPS for a in on):
                continue
            if any(not NOISE_RANGE[0] - _EPS <= present[a] <= NOISE_RANGE[1] + _EPS for a in noise):
                continue
            p_on = _on_set_prob(len(on), len(cb), p) if cb else 1.0
            total += p_on * q ** len(noise) * (1 - q) ** (n - len(on) - len(noise))
    return total


def label_posterior(aus: np.ndarray, codebook="paper002") -> np.ndarray:
    """(N, 7) posterior of the expressions given each face's AU intensities (rows of ``aus``)."""
    lik = np.array([[expression_likelihood(a, k, codebook) for k in range(NUM_CLASSES)] for a in aus])
    return lik / np.maximum(lik.sum(1, keepdims=True), 1e-300)

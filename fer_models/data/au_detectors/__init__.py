"""AU detectors: the ``detector:NAME`` AU source (``DataConfig.au_source``, paper 002, Sec. 2:
"alternatively, a pretrained AU detector could be used").

A detector is a class registered in :data:`fer_models.registry.AU_DETECTORS` (one module per
entry in this package; the base class and the helpers are in ``_base``). The AU stage of the
preprocessing (``fer_models.data.cache.stages.au_stage``) runs it on every stored face crop;
its thresholded scores become the image's AU weights, drawn by the same renderer as the
codebook map. ``fer-orch list au-detectors`` lists them.
"""

from fer_models.data.au_detectors._base import (  # noqa: F401
    AUDetector,
    detector_class,
    detector_fingerprint,
    get_detector,
    predict_aus,
    weights_dir,
)

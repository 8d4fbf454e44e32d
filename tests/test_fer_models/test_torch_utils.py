"""fer_models.torch_utils: the state-dict checks that turn a failed load into one sentence."""

import torch

from fer_models.torch_utils import first_state_mismatch


def test_first_state_mismatch_names_missing_then_unexpected_then_wrong_shape():
    own = {"a": torch.zeros(2), "b": torch.zeros(3), "new": torch.zeros(1)}
    assert first_state_mismatch(own, {"a": torch.ones(2), "b": torch.ones(3), "new": torch.ones(1)}) is None
    assert first_state_mismatch(own, {"a": torch.ones(2), "b": torch.ones(3)}) == "new"
    assert first_state_mismatch(own, {"a": torch.ones(2), "b": torch.ones(3)}, {"new"}) is None
    assert first_state_mismatch(own, {"a": torch.ones(2), "b": torch.ones(3), "new": torch.ones(1),
                                      "extra": torch.ones(1)}) == "extra"
    assert first_state_mismatch(own, {"a": torch.ones(2), "b": torch.ones(4), "new": torch.ones(1)}) == "b"

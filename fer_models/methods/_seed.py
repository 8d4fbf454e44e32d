"""Base of the seed networks (papers 001, 003, 004): full classifiers with named layers.

They take no backbone; ``features`` maps paper 002's layers 1..5 onto their conv stages
(each subclass documents which), so the AU loss and the metrics work for them too; M[k]
is Grad-CAM at layer 5 (their last conv block), through pytorch-grad-cam.

Input channels: ``in_chans`` 1 for grayscale (papers 001 and 004 train on grey faces;
``DataConfig.color: gray``, which ``build_model`` turns into ``in_chans=1``) or 3 (paper 003,
and the project's RGB default). A grey network given a 3-channel batch (an RGB loader, e.g.
an analysis job reading another dataset) sees its luminance (ITU-R BT.601 weights, those of
``torchvision``'s ``rgb_to_grayscale``), so it never fails on an RGB input.

Initialisation (``init``), each network defaulting to its paper's:

- ``khorrami`` (paper 001, Sec. 3.2): zero-mean Gaussian weights with sd ``k / sqrt(fan_in)``,
  one ``k ~ U[0.2, 1.2]`` drawn for the whole network. The extracted text reads
  "σ = k / N_FAN_IN"; the released code (``ck_plus/model.py``) divides by
  ``sqrt(fan_in)``, which we follow (dividing by ``fan_in`` itself would shrink the conv3
  output by ~1e-4 and stall training). Biases of the hidden FC layer start at 1.0 and the
  others at 0, as there;
- ``glorot`` (paper 003, "initialized using the approach proposed by Glorot and Bengio"):
  uniform Glorot weights (gain 1, Lasagne's default in the released code), zero biases;
- ``he_normal`` (paper 004's Keras network, Sharma 2020): truncated normal (cut at 2 sd)
  with sd ``sqrt(2 / fan_in)`` for the conv and hidden dense kernels, Glorot uniform for
  the output layer (Keras' default, the released net sets no initialiser there), zero
  biases, BatchNorm at gamma 1, beta 0;
- ``torch``: PyTorch's default initialisation (what these networks had before).

The draws use torch's global generator, which the trainer seeds with ``TrainConfig.seed``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fer_models.errors import ConfigError
from fer_models.methods._base import FERModel, GradCAMMixin, ModelOutput

INITS = ("khorrami", "glorot", "he_normal", "torch")
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


class SeedNet(GradCAMMixin, FERModel):
    # paper layer -> name of the module (in self.layers) whose output is that layer
    layer_names: dict[int, str] = {}
    #: the hidden FC layer whose bias ``khorrami`` initialises at 1.0 (released code of paper 001)
    hidden_fc: str | None = None

    def __init__(self, num_classes: int, in_chans: int = 3):
        super().__init__(num_classes)
        if in_chans not in (1, 3):
            raise ConfigError(f"in_chans must be 1 (grayscale) or 3 (RGB), got {in_chans}")
        self.in_chans = in_chans
        self.layers = nn.Sequential()  # filled by subclasses: the conv part, in order
        self.classifier = nn.Sequential()  # flatten/pool + dense part

    def cam_layer(self) -> nn.Module:
        return self.layers.get_submodule(self.layer_names[5])

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with the network's channel count (RGB -> luminance for a grey network)."""
        if self.in_chans == 1 and x.shape[1] == 3:
            w = x.new_tensor(GRAY_WEIGHTS).view(1, 3, 1, 1)
            return (x * w).sum(1, keepdim=True)
        return x

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        want = {v: k for k, v in self.layer_names.items()}
        feats: dict[int, torch.Tensor] = {}
        x = self.to_input(x)
        for name, mod in self.layers.named_children():
            x = mod(x)
            if name in want:
                feats[want[name]] = x
        return ModelOutput(logits=self.classifier(x), features=feats, cams=None)

    def tap_layers(self) -> dict[str, nn.Module]:
        taps = dict(self.layers.named_children())
        taps.update(dict(self.classifier.named_children()))
        return taps

    # -- initialisation ----------------------------------------------------------------
    def init_weights(self, init: str) -> None:
        """Initialise every conv / linear / batch-norm module the ``init`` way (module docstring)."""
        if init not in INITS:
            raise ConfigError(f"init must be one of {', '.join(INITS)}, got '{init}'")
        if init == "torch":
            return
        weighted = [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        k = float(torch.empty(()).uniform_(0.2, 1.2)) if init == "khorrami" else 0.0
        hidden = self.classifier.get_submodule(self.hidden_fc) if self.hidden_fc else None
        with torch.no_grad():
            for m in weighted:
                fan_in = m.weight[0].numel()
                if init == "khorrami":
                    m.weight.normal_(0.0, k / math.sqrt(fan_in))
                elif init == "glorot" or (init == "he_normal" and m is weighted[-1]):
                    nn.init.xavier_uniform_(m.weight)
                else:  # he_normal (Keras): truncated at two standard deviations
                    sd = math.sqrt(2.0 / fan_in)
                    nn.init.trunc_normal_(m.weight, 0.0, sd, -2 * sd, 2 * sd)
                if m.bias is not None:
                    m.bias.fill_(1.0 if (init == "khorrami" and m is hidden) else 0.0)
            for m in self.modules():
                if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    m.reset_parameters()
        self.init = init

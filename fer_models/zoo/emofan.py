"""``emofan``: EmoNet / EmoFAN (Toisoul et al., Nature Machine Intelligence 2021), one of paper 004's networks."""

from __future__ import annotations

import torch
from torch import nn

from fer_models.errors import MissingWeightsError
from fer_models.registry import MODELS
from fer_models.zoo import InputSpec, ZooEntry, weights_dir

FILE = "emonet_8.pth"


class _Expression(nn.Module):
    """EmoNet returns a dict (expression, valence, arousal, heatmap); the zoo reads the expression logits."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)["expression"]


@MODELS.register("emofan", paper="004", published=True, weights=f"download {FILE}")
class EmoFAN(ZooEntry):
    """EmoFAN (paper 004; AffectNet, 8 classes, 256 px RGB); needs the emonet code and its weights file."""

    name = "emofan"
    input = InputSpec(256, 3, "unit", crop="face-alignment's box; here the 1.25 x landmark box")
    classes = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")  # emonet's order
    layers = {1: "net.conv1", 2: "net.conv2", 3: "net.conv3", 4: "net.conv4", 5: "net.emo_convs"}
    weights = (f"pretrained/{FILE} of github.com/face-analysis/emonet (not on PyPI, never downloaded here): "
               f"place it in $FER_ORCH_HOME/weights/zoo/")

    def build(self, **options) -> nn.Module:
        path = weights_dir() / FILE
        if not path.is_file():
            raise MissingWeightsError(
                f"emofan needs its weights file {path} (pretrained/{FILE} of github.com/face-analysis/emonet; put it "
                f"there, fer-orch never downloads) and that repository's `emonet` package on PYTHONPATH")
        try:
            from emonet.models import EmoNet
        except ImportError as e:
            raise MissingWeightsError("emofan's architecture is the `emonet` package of github.com/face-analysis/emonet; "
                                      "put it on PYTHONPATH") from e
        net = EmoNet(n_expression=8)
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict({k.replace("module.", ""): v for k, v in state.items()}, strict=False)
        return _Expression(net.eval()).eval()

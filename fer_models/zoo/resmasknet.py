"""``resmasknet``: Residual Masking Network (Pham, Vu & Tran, ICPR 2020), one of paper 004's networks."""

from __future__ import annotations

import torch
from torch import nn

from fer_models.errors import MissingWeightsError
from fer_models.registry import MODELS
from fer_models.zoo import InputSpec, ZooEntry, weights_dir

FILE = "Z_resmasking_dropout1_rot30_2019Nov30_13.32"


@MODELS.register("resmasknet", paper="004", published=True, weights=f"download {FILE}")
class ResMaskNet(ZooEntry):
    """ResMaskNet (paper 004's RMN; FER2013, 224 px RGB); needs the `rmn` package and its weights file."""

    name = "resmasknet"
    #: as the rmn package feeds it: 224 x 224 RGB, ToTensor ([0, 1]) without normalisation
    input = InputSpec(224, 3, "unit", crop="rmn's face detector box; here the 1.25 x landmark box")
    classes = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # rmn's FER_2013_EMO_DICT
    #: the ResNet34 stages (the masking blocks multiply them); paper 004 taps maxpool and mask4
    layers = {1: "maxpool", 2: "layer1", 3: "layer2", 4: "layer3", 5: "layer4"}
    weights = (f"{FILE} from the rmn package's GitHub release (rmn downloads it at first use; here it is "
               f"never downloaded): place it in $FER_ORCH_HOME/weights/zoo/")

    def build(self, **options) -> nn.Module:
        path = weights_dir() / FILE
        if not path.is_file():
            raise MissingWeightsError(
                f"resmasknet needs its weights file {path} (download {FILE} from the rmn package's GitHub release "
                f"and put it there; fer-orch never downloads) and the architecture from `pip install --no-deps rmn`")
        try:
            from rmn.models import resmasking_dropout1
        except ImportError as e:
            raise MissingWeightsError("resmasknet's architecture comes from the rmn package: pip install --no-deps rmn") from e
        net = resmasking_dropout1(in_channels=3, num_classes=7)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=False)["net"])
        return net.eval()

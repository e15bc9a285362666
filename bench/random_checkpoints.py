"""Random-initialised model files in the released formats, for tests and the benchmark.

Weights cannot be downloaded on the project's machines, and speed does not depend on their
values, so both the tests and the benchmark write checkpoints that the real loading code
reads exactly as it reads the released ones.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image


def save_cn_clip_checkpoint(name: str, folder: Path, seed: int = 0) -> Path:
    """Write a random Chinese-CLIP checkpoint exactly as released: fp16 weights under
    `state_dict` with DataParallel's `module.` prefix, named clip_cn_<model>.pt."""
    from cn_clip.clip.utils import _MODEL_INFO, _MODELS, create_model

    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):
        model = create_model(_MODEL_INFO[name]["struct"])
    state = {f"module.{key}": value for key, value in model.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / _MODELS[name][1]
    torch.save({"epoch": 1, "step": 1, "name": name, "state_dict": state}, path)
    return path


def save_inception_state_dict(path: Path, calibration_images: Sequence[Image.Image], seed: int = 0) -> Path:
    """Write a random torchvision Inception-v3 state_dict with the released keys (AuxLogits too).

    Plain random init explodes activations (batch-norm statistics of 0 and 1), so the
    statistics are averaged over `calibration_images` and the classifier centred and scaled,
    giving logits of a few units that differ between images, as a trained classifier's do.
    """
    from torchvision.models import inception_v3

    from aigc_eval.scoring.inception import inception_transform

    torch.manual_seed(seed)
    model = inception_v3(weights=None, aux_logits=True, init_weights=True)
    batch = torch.stack([inception_transform()(image.convert("RGB")) for image in calibration_images])
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a plain average over the calibration pass
    features = {}
    hook = model.avgpool.register_forward_hook(lambda mod, inputs, output: features.__setitem__("f", output.flatten(1)))
    with torch.no_grad():
        model.train()(batch)
        model.eval()(batch)
        mean = features["f"].mean(0)
        spread = (features["f"] - mean).norm(dim=1).mean()
        weight = torch.randn(1000, mean.numel()) / spread * 3.0
        model.fc.weight.copy_(weight)
        model.fc.bias.copy_(-weight @ mean)
    hook.remove()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path

"""Which features FID and KID are computed on (`main.py --reference ... --fid-features NAME`).

- `torchvision` (the default): torchvision Inception-v3 (IMAGENET1K_V1) 2048-d pool features,
  from the scoring pass that gives the logits, so they cost nothing extra. Comparable across
  runs of this tool, not with FIDs published on TensorFlow's Inception.
- `torch-fidelity`: torch-fidelity's `inception-v3-compat` extractor, the TensorFlow FID
  Inception (2015-12-05 weights, as TTUR and pytorch-fid use) ported to torch, fed as
  torch-fidelity feeds it: the whole image decoded at full resolution as uint8 NCHW, resized to
  299 by its own TF1-compatible bilinear resize, in fp32. Its FIDs are comparable with published
  ones. Costs a second decode of each image and a second Inception forward pass.

Its weights (`weights-inception-2015-12-05-6726825d.pth`, 91 MB) download into torch's hub
checkpoint folder on first use; `--fid-weights PATH` takes a local copy. Features are kept in
the score cache under their backbone's name, so a second run computes nothing for them.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from aigc_eval import log
from aigc_eval.io.image_fetch import FetchConfig
from aigc_eval.scoring.distribution import BACKBONE_FIDELITY, BACKBONE_INCEPTION
from aigc_eval.scoring.image_pipeline import PREPROCESSING_VERSION, PreparedRow, batched, prepare_rows
from aigc_eval.scoring.model_lanes import ModelLanes
from aigc_eval.scoring.model_loading import LazyModel, WeightsMissingError, torch_init_skipped, weights_not_found
from aigc_eval.scoring.score_cache import ScoreCache, weights_key

FIDELITY_EXTRACTOR = "inception-v3-compat"  # torch-fidelity's registry name for the TF FID Inception
FIDELITY_LAYER = "2048"  # its pool features, what torch-fidelity's FID and KID use
FIDELITY_WEIGHTS_URL = (  # torch_fidelity.feature_extractor_inceptionv3.URL_INCEPTION_V3 in 0.4.0
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)


@dataclass(frozen=True)
class FidFeatures:
    """One choice of --fid-features: the backbone key its features go under, and what they are."""

    name: str
    backbone: str  # key in the feature dicts, cache kind and --save-features file name
    description: str


FID_FEATURES_REGISTRY: dict[str, FidFeatures] = {
    "torchvision": FidFeatures(
        "torchvision", BACKBONE_INCEPTION,
        "torchvision Inception-v3 (IMAGENET1K_V1) 2048-d pool features from the scoring pass; comparable across "
        "runs of this tool, not with FIDs published on TensorFlow's Inception"),
    "torch-fidelity": FidFeatures(
        "torch-fidelity", BACKBONE_FIDELITY,
        f"torch-fidelity's {FIDELITY_EXTRACTOR} 2048-d features (TensorFlow FID Inception, weights 2015-12-05) of "
        "each whole image decoded at full resolution, resized to 299 by its TF1-compatible bilinear resize, fp32; "
        "comparable with FIDs published on TensorFlow's Inception (TTUR, torch-fidelity, pytorch-fid)"),
}
DEFAULT_FID_FEATURES = "torchvision"


def fid_features_named(name: str) -> FidFeatures:
    """The registry entry for --fid-features `name`; ValueError naming the choices otherwise."""
    if name not in FID_FEATURES_REGISTRY:
        raise ValueError(f"--fid-features {name}: choose from {', '.join(FID_FEATURES_REGISTRY)}")
    return FID_FEATURES_REGISTRY[name]


def fidelity_checkpoint_path() -> Path:
    """Where torch-fidelity's download puts its Inception weights: torch hub's checkpoints folder."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(FIDELITY_WEIGHTS_URL)


def load_fidelity_inception(weights_path: str | Path | None, device: torch.device) -> torch.nn.Module:
    """torch-fidelity's FeatureExtractorInceptionV3(inception-v3-compat, ['2048']) in eval mode, fp32.

    Without `weights_path` torch-fidelity loads its weights from torch hub's checkpoints folder,
    downloading them there first when missing. Raises WeightsMissingError (one line naming the
    file, the URL and where to put it) when the weights can be neither read nor downloaded.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    name = os.path.basename(FIDELITY_WEIGHTS_URL)
    if weights_path is None:
        target = fidelity_checkpoint_path()
        # torch hub announces a download on stderr; kept for the log, so that a failed one is one line.
        chatter = io.StringIO()
        try:
            # The checkpoint is loaded strictly, so the random initialisation is wasted work.
            with torch_init_skipped(), (contextlib.redirect_stderr(chatter) if not target.is_file()
                                        else contextlib.nullcontext()):
                model = FeatureExtractorInceptionV3(FIDELITY_EXTRACTOR, [FIDELITY_LAYER], verbose=False)
            if chatter.getvalue().strip():
                log.info("%s", chatter.getvalue().strip())
        except Exception as exc:  # the hub client raises many types when offline
            if target.is_file():
                raise WeightsMissingError(f"{target}: cannot load torch-fidelity's Inception weights "
                                          f"({type(exc).__name__}: {str(exc)[:200]})") from None
            raise weights_not_found("torch-fidelity Inception", target, exc, FIDELITY_WEIGHTS_URL,
                                    f"pass --fid-weights PATH to a local copy of {name}") from None
    else:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise WeightsMissingError(f"--fid-weights {path}: no such file; give the path of a local copy of {name} "
                                      f"({FIDELITY_WEIGHTS_URL})")
        try:
            with torch_init_skipped():
                model = FeatureExtractorInceptionV3(FIDELITY_EXTRACTOR, [FIDELITY_LAYER],
                                                    feature_extractor_weights_path=str(path), verbose=False)
        except Exception as exc:
            raise WeightsMissingError(f"--fid-weights {path}: not torch-fidelity's Inception weights "
                                      f"({type(exc).__name__}: {str(exc)[:200]})") from None
    return model.eval().to(device)


def uint8_chw(image: Image.Image) -> torch.Tensor:
    """The whole decoded image as uint8 (3, H, W), as torch-fidelity's pil_to_tensor gives it."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).contiguous()


class FidelityInception:
    """torch-fidelity's Inception features for rows of images, with the score cache.

    A stage for image_pipeline.prepare_rows: `input_size` 0 makes it decode every image at full
    resolution (no JPEG draft, no box reduction), since torch-fidelity resizes the whole image
    itself; images of different sizes are run in groups of equal size.
    """

    input_size = 0
    transform = staticmethod(uint8_chw)

    def __init__(self, model: LazyModel, device: torch.device, cache: ScoreCache | None, model_key: str):
        self.model, self.device, self.cache = model, device, cache
        self.kind = BACKBONE_FIDELITY
        self.model_key = model_key
        self.computed = self.reused = 0  # features computed now / read from the score cache

    @classmethod
    def load(cls, weights_path: Path | None, device: torch.device, cache: ScoreCache | None) -> "FidelityInception":
        """Prepare the extractor: downloaded now when missing (or a WeightsMissingError, before
        any other work), read from disk when first needed."""
        model = LazyModel(lambda: load_fidelity_inception(weights_path, device))
        checkpoint = Path(weights_path).expanduser() if weights_path else fidelity_checkpoint_path()
        if not checkpoint.is_file():
            model.get()
        # fp32 always: published FIDs are fp32, and the cache must not mix precisions.
        key = (f"torch-fidelity:{FIDELITY_EXTRACTOR}:{FIDELITY_LAYER}:{weights_key(checkpoint)}"
               f"|fp32|{PREPROCESSING_VERSION}-full")
        return cls(model, device, cache, key)

    def cached_features(self, digest: str) -> torch.Tensor | None:
        """This image's features from the score cache, if an earlier run computed them."""
        return self.cache.get(self.kind, self.model_key, digest) if self.cache else None

    @torch.inference_mode()
    def extract(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 2048) float32 features on the CPU of a uint8 (N, 3, H, W) batch of one image size."""
        return self.model.get()(pixels.to(self.device))[0].float().cpu()

    def batch_features(self, batch: Sequence[PreparedRow], lanes: ModelLanes) -> list[torch.Tensor | None]:
        """Each row's features (None when its image failed): cached, or computed in `lanes` one
        group of equal image size at a time; new ones are written to the cache."""
        out: list[torch.Tensor | None] = [item.cached[0] if item.ok else None for item in batch]
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, item in enumerate(batch):
            if item.ok and item.cached[0] is None:
                groups.setdefault(tuple(item.inputs[0].shape), []).append(index)
        pending = [(indices, lanes.split(self.extract, torch.stack([batch[i].inputs[0] for i in indices])))
                   for indices in groups.values()]
        new = []
        for indices, result in pending:
            for index, vector in zip(indices, result.result()):
                out[index] = vector
                new.append((batch[index].digest, vector))
        self.computed, self.reused = self.computed + len(new), self.reused + sum(v is not None for v in out) - len(new)
        if self.cache:
            self.cache.put_many(self.kind, self.model_key, new)
        return out

    def features(self, rows: Iterable[dict[str, str]], image_col: str, base_dir: Path | None, fetch: FetchConfig,
                 lanes: ModelLanes, *, workers: int = 4, batch_size: int = 32, quiet: bool = True,
                 total: int | None = None, desc: str = "torch-fidelity") -> list[torch.Tensor | None]:
        """Features of each row's image, in order (None where it could not be fetched or decoded),
        through the same fetch path as the scoring pass."""
        prepared = prepare_rows(rows, image_col, [self], fetch, workers, base_dir, ahead=2 * batch_size)
        out: list[torch.Tensor | None] = []
        with tqdm(total=total, desc=desc, unit="img", disable=quiet) as progress:
            for batch in batched(prepared, batch_size):
                out.extend(self.batch_features(batch, lanes))
                progress.update(len(batch))
        return out


def open_fid_extractor(name: str, weights: Path | None, device: torch.device,
                       cache: ScoreCache | None) -> FidelityInception | None:
    """The extra extractor --fid-features `name` needs: None for torchvision (its features come
    from the scoring pass), else FidelityInception, whose weights are checked now."""
    choice = fid_features_named(name)
    if weights is not None and choice.backbone != BACKBONE_FIDELITY:
        raise ValueError(f"--fid-weights is for --fid-features torch-fidelity, not {name}")
    if choice.backbone == BACKBONE_INCEPTION:
        return None
    extractor = FidelityInception.load(weights, device, cache)
    log.info("FID and KID on %s", choice.description)
    return extractor

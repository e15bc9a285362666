"""Loading the two models, from local files or by download, with errors that say what to fetch.

Reads: Chinese-CLIP checkpoints `clip_cn_<model>.pt` from cn_clip's download root (default
~/.cache/clip), and the torchvision Inception-v3 IMAGENET1K_V1 state_dict from torch's hub
cache or a path given by the user. On a machine with network access both are downloaded by
the libraries' own code on first use.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import torch

from aigc_eval import columns as col

CLIP_DEFAULT_MODEL = "ViT-B-16"
CLIP_DEFAULT_DIR = Path("~/.cache/clip").expanduser()  # cn_clip's own default download root


class LazyModel:
    """A model loaded on first use, so a run whose results are all cached loads nothing."""

    def __init__(self, load: Callable[[], torch.nn.Module]):
        self._load = load
        self._model: torch.nn.Module | None = None
        self._lock = threading.Lock()  # a model warming up in one thread and needed in another loads once

    def get(self) -> torch.nn.Module:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model


class WeightsMissingError(RuntimeError):
    """Model weights are neither on disk nor downloadable; the message names the file and place."""


def weights_not_found(what: str, target: Path, exc: BaseException, source: str, local: str) -> WeightsMissingError:
    """The one-line error for weights that are not at `target` and could not be downloaded:
    where to get them (`source`) and the flag that takes a local copy (`local`)."""
    return WeightsMissingError(
        f"{what} weights not found: expected {target} and could not download it ({type(exc).__name__}). "
        f"Download {source} and put it at {target}, or {local}."
    )


def default_device() -> str:
    """cuda when a GPU is visible, else cpu."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | None) -> torch.device:
    """Check a --device value, raising ValueError when it cannot be used here."""
    device = device or default_device()
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"--device {device}: {exc}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA GPU is available here; use --device cpu")
    return resolved


def clip_model_names() -> list[str]:
    """Names cn_clip can load by name (its `available_models()`)."""
    from cn_clip.clip import available_models

    return list(available_models())


def clip_checkpoint_path(name: str, model_dir: str | Path | None) -> Path:
    """Where cn_clip looks for the checkpoint of `name` (for ViT-B-16: clip_cn_vit-b-16.pt)."""
    from cn_clip.clip.utils import _MODELS

    return Path(model_dir or CLIP_DEFAULT_DIR).expanduser() / _MODELS[name][1]


def clip_input_resolution(name: str) -> int:
    """The image size a Chinese-CLIP model takes (224, or 336 for ViT-L-14-336)."""
    from cn_clip.clip.utils import _MODEL_INFO

    return int(_MODEL_INFO[name]["input_resolution"])


# The patches below are process-wide. Two models loading at once in two threads (ModelLanes)
# would otherwise interleave them, and the one leaving last could restore the other's
# no-op initialisers for good.
_PATCHES_LOCK = threading.RLock()


@contextlib.contextmanager
def torch_init_skipped():
    """Within this context, new torch modules skip their random initialisation. Only for a
    model whose every weight is then loaded with a strict load_state_dict. One thread at a time."""
    from unittest import mock

    initialisers = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_",
                    "xavier_uniform_", "xavier_normal_", "constant_", "zeros_", "ones_")
    with _PATCHES_LOCK, contextlib.ExitStack() as stack:
        for name in initialisers:
            stack.enter_context(mock.patch.object(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor))
        for name in ("constant_", "xavier_normal_", "xavier_uniform_"):  # MultiheadAttention's own imports
            stack.enter_context(mock.patch.object(torch.nn.modules.activation, name, lambda tensor, *args, **kwargs: tensor))
        yield


@contextlib.contextmanager
def random_init_skipped():
    """torch_init_skipped, and the same for cn_clip's modules (together over half of
    Chinese-CLIP's load time); cn_clip's create_model also skips rounding those random
    weights to fp16, so the checkpoint is copied straight into the fp32 parameters that
    load_from_name would otherwise convert back. Only for a model whose every weight is
    then loaded with a strict load_state_dict, as create_model does."""
    from unittest import mock

    from cn_clip.clip import model as clip_model
    from cn_clip.clip import modeling_bert
    from cn_clip.clip import utils as clip_utils

    with contextlib.ExitStack() as stack:
        stack.enter_context(torch_init_skipped())
        stack.enter_context(mock.patch.object(clip_model.CLIP, "initialize_parameters", lambda self: None))
        stack.enter_context(mock.patch.object(modeling_bert.BertPreTrainedModel, "_init_weights", lambda self, module: None))
        stack.enter_context(mock.patch.object(clip_utils, "convert_weights", lambda model: None))
        yield


@contextlib.contextmanager
def checkpoint_files_mapped():
    """Within this context, torch.load given an open checkpoint file maps it (mmap) instead of
    reading it into memory first: cn_clip opens the file itself, and the copy it saves is about
    a third of Chinese-CLIP's load time. A legacy (non-zip) checkpoint is read as before."""
    from unittest import mock

    original = torch.load

    def load(f, *args, **kwargs):
        name = getattr(f, "name", None)
        if isinstance(name, str) and os.path.isfile(name) and "mmap" not in kwargs:
            try:
                return original(name, *args, mmap=True, **kwargs)
            except RuntimeError:  # only zip-format checkpoints can be mapped
                f.seek(0)
        return original(f, *args, **kwargs)

    with _PATCHES_LOCK, mock.patch.object(torch, "load", load):
        yield


def load_chinese_clip(name: str, model_dir: str | Path | None, device: torch.device):
    """Load a Chinese-CLIP model in eval mode and fp32 with cn_clip's `load_from_name`.

    Returns (model, image_transform). Downloads into `model_dir` when the checkpoint is
    missing there; raises WeightsMissingError when that fails.
    """
    from cn_clip.clip import load_from_name
    from cn_clip.clip.utils import _MODELS

    if name not in _MODELS:
        raise ValueError(f"--model {name}: not a Chinese-CLIP model; choose from {', '.join(_MODELS)}")
    target = clip_checkpoint_path(name, model_dir)
    repo = _MODELS[name][0]
    chatter = io.StringIO()
    try:
        # cn_clip prints its whole config to stdout, which is kept for data; it goes to the debug log.
        with contextlib.redirect_stdout(chatter), random_init_skipped(), checkpoint_files_mapped():
            model, transform = load_from_name(name, device="cpu", download_root=str(target.parent))
    except Exception as exc:  # the hub client raises many types when offline
        if target.is_file():
            raise WeightsMissingError(f"{target}: cannot load Chinese-CLIP checkpoint ({type(exc).__name__}: {exc})") from None
        raise weights_not_found("Chinese-CLIP", target, exc, f"{target.name} from https://huggingface.co/OFA-Sys/{repo}",
                                "pass --model-dir with the folder that holds it") from None
    finally:
        logging.getLogger("aigc_eval").debug("%s", chatter.getvalue().strip())
    # load_from_name leaves the model in training mode: dropout and batch-norm statistics
    # would make a score depend on its batch neighbours.
    model = model.float().eval().to(device)
    return model, transform


QUICK_GELU_SCALE = 1.702  # cn_clip's QuickGELU: x * sigmoid(1.702 x)


def streamline_chinese_clip(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Rewrite a loaded Chinese-CLIP for inference speed without changing its function.

    Each QuickGELU MLP becomes c_fc' -> SiLU -> c_proj' with 1.702 folded into the weights
    (x*sigmoid(1.702x) = silu(1.702x)/1.702): one pass over the widest activations instead
    of three. For a lowered `dtype` the linear and convolution weights are stored in it,
    which autocast would otherwise re-cast on every batch; layer norms stay fp32.
    """
    from cn_clip.clip.model import QuickGELU

    with torch.no_grad():
        for module in model.modules():
            mlp = getattr(module, "mlp", None)
            if isinstance(mlp, torch.nn.Sequential) and isinstance(getattr(mlp, "gelu", None), QuickGELU):
                mlp.c_fc.weight.mul_(QUICK_GELU_SCALE)
                mlp.c_fc.bias.mul_(QUICK_GELU_SCALE)
                mlp.c_proj.weight.div_(QUICK_GELU_SCALE)
                mlp.gelu = torch.nn.SiLU()
        if dtype != torch.float32:
            for module in model.modules():
                if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                    module.to(dtype)
                elif isinstance(module, torch.nn.MultiheadAttention) and module.in_proj_weight is not None:
                    module.in_proj_weight.data = module.in_proj_weight.data.to(dtype)
                    module.in_proj_bias.data = module.in_proj_bias.data.to(dtype)
    return model


def inception_checkpoint_path() -> Path:
    """Where torchvision caches the IMAGENET1K_V1 Inception-v3 state_dict."""
    from torchvision.models import Inception_V3_Weights

    url = Inception_V3_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def fold_batch_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Fold each eval-mode batch norm of torchvision's Inception into the convolution before it.

    The same function (to about 1e-9 in fp32) with ~90 fewer passes over the activations.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in model.modules():
        if isinstance(getattr(module, "bn", None), torch.nn.BatchNorm2d) and isinstance(getattr(module, "conv", None), torch.nn.Conv2d):
            module.conv = fuse_conv_bn_eval(module.conv, module.bn)
            module.bn = torch.nn.Identity()
    return model


# With --precision auto the layers up to here run in fp32 and the rest in the lowered dtype.
# On the benchmark's Inception, bf16 in the stem moved the pooled features by 28% of their
# spread between images (IS by 1.1%), as much as half a grey level of input noise does;
# fp32 up to Mixed_5c cuts that to 8% (IS 0.02-0.05%) and keeps most of bf16's speed-up.
INCEPTION_FP32_STEM_END = "Mixed_5c"


class Fp32StemInception(torch.nn.Module):
    """torchvision's Inception-v3 with its stem (input to `stem_end`) and classifier kept
    in fp32 when called under autocast; the layers between follow the autocast dtype. With
    `fp32_stem` False every layer follows autocast, as the plain model does.

    `features` gives the logits and the 2048-d pool features (the classifier's input, what
    FID and KID are computed on) from one forward pass; calling the module gives the logits."""

    def __init__(self, model: torch.nn.Module, stem_end: str = INCEPTION_FP32_STEM_END, fp32_stem: bool = True):
        super().__init__()
        # named_children is torchvision's forward order; AuxLogits only runs in training.
        layers = [(name, layer) for name, layer in model.named_children() if name not in ("AuxLogits", "fc")]
        cut = [name for name, _ in layers].index(stem_end) + 1
        self.transform = model._transform_input
        self.stem = torch.nn.Sequential(OrderedDict(layers[:cut]))
        self.body = torch.nn.Sequential(OrderedDict(layers[cut:]))
        self.fc = model.fc
        self.fp32_stem = fp32_stem

    def features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, pool features) of a batch, both (N, ...) in the classifier's dtype."""
        if not self.fp32_stem:  # every layer as the caller's autocast (or none) says
            pool = torch.flatten(self.body(self.stem(self.transform(pixels))), 1)
            return self.fc(pool), pool
        device = pixels.device.type
        with torch.autocast(device_type=device, enabled=False):
            features = self.stem(self.transform(pixels.float()))
        features = self.body(features)
        with torch.autocast(device_type=device, enabled=False):
            pool = torch.flatten(features, 1).float()
            return self.fc(pool), pool

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.features(pixels)[0]


def inception_categories() -> list[str]:
    """The 1000 ImageNet class names of the IMAGENET1K_V1 weights, in logit order."""
    from torchvision.models import Inception_V3_Weights

    return list(Inception_V3_Weights.IMAGENET1K_V1.meta["categories"])


def load_inception(weights_path: str | Path | None, device: torch.device):
    """Load torchvision's Inception-v3 ImageNet classifier in eval mode.

    With `weights_path`, reads that state_dict file; otherwise uses torchvision's
    IMAGENET1K_V1 weights (downloaded to torch's hub cache on first use). Returns
    (model, category names). Raises WeightsMissingError when no weights can be had.
    """
    from torchvision.models import Inception_V3_Weights, inception_v3

    weights = Inception_V3_Weights.IMAGENET1K_V1
    categories = inception_categories()
    if weights_path is None:
        target = inception_checkpoint_path()
        try:
            with torch_init_skipped():  # the downloaded state_dict is loaded strictly
                model = inception_v3(weights=weights, progress=False)
        except Exception as exc:
            raise weights_not_found("Inception-v3", target, exc, weights.url,
                                    "pass --weights PATH to a local state_dict file") from None
    else:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise WeightsMissingError(f"--weights {path}: no such file; give the path of an Inception-v3 state_dict (.pth)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            has_aux = any(key.startswith("AuxLogits.") for key in state)
            with torch_init_skipped():
                model = inception_v3(
                    weights=None, aux_logits=has_aux, init_weights=False, transform_input=True, num_classes=len(categories)
                )
            model.load_state_dict(state)
        except Exception as exc:
            raise WeightsMissingError(f"--weights {path}: not an Inception-v3 ImageNet state_dict ({type(exc).__name__}: {str(exc)[:200]})") from None
    model.aux_logits = False
    model.AuxLogits = None
    return model.eval().to(device), categories


def cpu_supports_bf16() -> bool:
    """True when this CPU runs bfloat16 matrix work natively (AVX512-BF16 or AMX)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The compute dtype for --precision: auto is fp16 on CUDA and bf16 on CPUs with native
    bf16 support, else fp32 (Inception then keeps its stem in fp32: Fp32StemInception).
    Raises ValueError for a precision the device cannot run."""
    if precision not in col.PRECISIONS:
        raise ValueError(f"--precision {precision}: choose from {', '.join(col.PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_supports_bf16() else torch.float32
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("--precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, dtype: torch.dtype):
    """A context that runs a forward pass in `dtype` (mixed precision), or does nothing for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)

"""The straightforward implementation the benchmark compares against, as the article's
separate scripts work: two passes (CLIPScore, then IS), each fetching images one by one
with requests, decoding with PIL at full size, running fp32 models on a fixed batch."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import requests
import torch
from PIL import Image

from aigc_eval.scoring.metrics import clip_score, inception_score


def _load_rgb(url: str) -> Image.Image:
    response = requests.get(url, timeout=60)
    response.raise_for_status()
    return Image.open(io.BytesIO(response.content)).convert("RGB")


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def baseline_clipscores(rows: list[dict[str, str]], model_dir: Path, batch_size: int = 32,
                        device: str = "cpu") -> list[float]:
    """CLIPScore of each row: ViT-B-16 in fp32 on `device`, every image fetched and decoded in turn."""
    from cn_clip.clip import load_from_name, tokenize

    with contextlib.redirect_stdout(io.StringIO()):
        model, preprocess = load_from_name("ViT-B-16", device=device, download_root=str(model_dir))
    model.float().eval()  # cn_clip leaves a CUDA model in fp16; the baseline is fp32 everywhere
    scores: list[float] = []
    for batch in _chunks(rows, batch_size):
        pixels = torch.stack([preprocess(_load_rgb(row["image_url"])) for row in batch]).to(device)
        with torch.no_grad():
            image_emb = model.encode_image(pixels).float().cpu()
            text_emb = model.encode_text(tokenize([row["prompt"] for row in batch]).to(device)).float().cpu()
        scores.extend(clip_score(image_emb, text_emb).tolist())
    return scores


def baseline_inception_score(rows: list[dict[str, str]], weights: Path, batch_size: int = 32,
                             device: str = "cpu") -> float:
    """IS of all rows: Inception-v3 in fp32 on `device`, every image fetched and decoded again."""
    from torchvision.models import inception_v3

    from aigc_eval.scoring.inception import inception_transform

    model = inception_v3(weights=None, aux_logits=True, init_weights=False)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.to(device).eval()
    transform = inception_transform()
    logits = []
    for batch in _chunks(rows, batch_size):
        pixels = torch.stack([transform(_load_rgb(row["image_url"])) for row in batch]).to(device)
        with torch.no_grad():
            logits.append(model(pixels).cpu())
    return inception_score(torch.cat(logits), splits=min(10, len(rows)))[0]

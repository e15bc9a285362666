"""Model loading shortcuts that must not change what the models compute."""

import contextlib
import io
import threading
import time
from pathlib import Path

import pytest
import torch

from aigc_eval.scoring.model_loading import (
    INCEPTION_FP32_STEM_END,
    Fp32StemInception,
    LazyModel,
    checkpoint_files_mapped,
    cpu_supports_bf16,
    fold_batch_norms,
    load_chinese_clip,
    load_inception,
    random_init_skipped,
    streamline_chinese_clip,
    torch_init_skipped,
)


def _inception(weights) -> torch.nn.Module:
    return fold_batch_norms(load_inception(weights, torch.device("cpu"))[0])


def _pixels(count: int = 4) -> torch.Tensor:
    return torch.randn(count, 3, 299, 299, generator=torch.Generator().manual_seed(0))


def test_fp32_stem_inception_is_the_same_network(inception_weights):
    """Split into stem, body and classifier, it computes what torchvision's forward does."""
    model = _inception(inception_weights)
    split = Fp32StemInception(model)
    with torch.inference_mode():
        assert torch.equal(split(_pixels()), model(_pixels()))


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no native bfloat16")
def test_fp32_stem_runs_in_fp32_under_autocast_and_lands_nearer_fp32(inception_weights):
    model = _inception(inception_weights)
    split = Fp32StemInception(model)
    seen = {}
    split.stem.register_forward_hook(lambda module, inputs, output: seen.__setitem__("stem", output.dtype))
    split.body.register_forward_hook(lambda module, inputs, output: seen.__setitem__("body", output.dtype))
    with torch.inference_mode():
        reference = model(_pixels())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            all_bf16 = model(_pixels()).float()
            mixed = split(_pixels())
    assert seen == {"stem": torch.float32, "body": torch.bfloat16}
    assert mixed.dtype == torch.float32
    assert (mixed - reference).abs().max() < (all_bf16 - reference).abs().max()
    assert list(dict(split.stem.named_children()))[-1] == INCEPTION_FP32_STEM_END


@pytest.mark.parametrize("name, folder", [("RN50", "clip_dir"), ("ViT-B-16", "clip_dir_vit")])
def test_skipping_random_init_loads_the_same_clip_and_restores_the_initialisers(name, folder, request):
    from cn_clip.clip import load_from_name

    clip_dir = request.getfixturevalue(folder)
    with contextlib.redirect_stdout(io.StringIO()):
        plain, _ = load_from_name(name, device="cpu", download_root=str(clip_dir))
    fast, _ = load_chinese_clip(name, clip_dir, torch.device("cpu"))
    plain_state, fast_state = plain.float().state_dict(), fast.state_dict()
    assert plain_state.keys() == fast_state.keys()
    assert all(torch.equal(plain_state[key], fast_state[key]) for key in plain_state)
    before = torch.nn.init.normal_
    with random_init_skipped():
        untouched = torch.full((3,), 7.0)
        torch.nn.Linear(2, 2).reset_parameters()
        assert torch.equal(torch.nn.init.normal_(untouched), torch.full((3,), 7.0))
    assert torch.nn.init.normal_ is before
    assert not torch.equal(torch.nn.init.normal_(untouched), torch.full((3,), 7.0))


def test_inception_built_without_random_init_holds_exactly_the_checkpoint(inception_weights):
    saved = torch.load(inception_weights, weights_only=True)
    loaded = load_inception(inception_weights, torch.device("cpu"))[0].state_dict()
    assert loaded.keys() == {key for key in saved if not key.startswith("AuxLogits.")}
    assert all(torch.equal(loaded[key], saved[key]) for key in loaded)
    assert not torch.equal(torch.nn.Linear(4, 4).weight, torch.nn.Linear(4, 4).weight)  # initialisers restored


def test_two_threads_skipping_init_at_once_leave_the_initialisers_restored():
    """The two lanes load their models at the same time. Interleaved, the later thread would
    save the earlier one's no-op initialiser and restore it for good; they take turns."""
    original = torch.nn.init.uniform_
    second_inside, first_left = threading.Event(), threading.Event()

    def first():
        with torch_init_skipped():
            second_inside.wait(timeout=0.5)  # taking turns, the second cannot get inside now
        first_left.set()

    def second():
        with torch_init_skipped():
            second_inside.set()
            first_left.wait(timeout=0.5)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    threads[1].start()
    for thread in threads:
        thread.join()
    assert torch.nn.init.uniform_ is original


def test_open_checkpoint_files_are_mapped_and_legacy_ones_read(tmp_path):
    tensors = {"weight": torch.arange(300_000, dtype=torch.float32)}
    torch.save(tensors, tmp_path / "zip.pt")
    torch.save(tensors, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    original = torch.load
    with checkpoint_files_mapped():
        with open(tmp_path / "zip.pt", "rb") as handle:
            mapped = torch.load(handle, map_location="cpu")
        maps = Path("/proc/self/maps").read_text()
        with open(tmp_path / "legacy.pt", "rb") as handle:
            legacy = torch.load(handle, map_location="cpu")
    assert str(tmp_path / "zip.pt") in maps
    assert torch.equal(mapped["weight"], tensors["weight"]) and torch.equal(legacy["weight"], tensors["weight"])
    assert torch.load is original


PROMPTS = ["白色摄影棚里的运动鞋", "一杯咖啡放在大理石台面上，金色装饰，柔和的晨光", "口红"]


def _clip_inputs():
    from cn_clip.clip import tokenize

    images = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    return images, tokenize(PROMPTS, context_length=52)


def test_streamlined_clip_computes_the_same_embeddings(clip_dir_vit):
    import copy

    from cn_clip.clip.model import QuickGELU

    original, _ = load_chinese_clip("ViT-B-16", clip_dir_vit, torch.device("cpu"))
    fast = streamline_chinese_clip(copy.deepcopy(original), torch.float32)
    assert not any(isinstance(m, QuickGELU) for m in fast.modules())
    assert sum(isinstance(m, torch.nn.SiLU) for m in fast.modules()) == 12  # one per ViT-B block
    images, texts = _clip_inputs()
    with torch.inference_mode():
        assert torch.allclose(fast.encode_image(images), original.encode_image(images), atol=1e-5)
        assert torch.equal(fast.encode_text(texts), original.encode_text(texts))


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no native bfloat16")
def test_streamlined_clip_keeps_lowered_weights_and_fp32_norms(clip_dir_vit):
    import copy

    original, _ = load_chinese_clip("ViT-B-16", clip_dir_vit, torch.device("cpu"))
    fast = streamline_chinese_clip(copy.deepcopy(original), torch.bfloat16)
    linears = [m for m in fast.modules() if isinstance(m, torch.nn.Linear)]
    norms = [m for m in fast.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert linears and all(m.weight.dtype == torch.bfloat16 for m in linears)
    assert norms and all(m.weight.dtype == torch.float32 for m in norms)
    images, texts = _clip_inputs()
    with torch.inference_mode():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lowered = (fast.encode_image(images).float(), fast.encode_text(texts).float())
            autocast_only = (original.encode_image(images).float(), original.encode_text(texts).float())
        reference = (original.encode_image(images), original.encode_text(texts))
    for low, auto, ref in zip(lowered, autocast_only, reference):
        similarity = torch.nn.functional.cosine_similarity(low, ref)
        assert similarity.min() > 0.99
        assert (low - ref).abs().max() < 2 * (auto - ref).abs().max()  # no worse than autocast alone


def test_text_encoding_without_trailing_padding_is_unchanged(clip_dir):
    from aigc_eval.scoring.clipscore import ClipScorer

    scorer = ClipScorer.load("RN50", clip_dir, torch.device("cpu"), "fp32")
    _, texts = _clip_inputs()  # padded to the full 52 tokens
    with torch.inference_mode():
        full = scorer.model.get().encode_text(texts)
    assert torch.allclose(scorer._encode_new_texts(PROMPTS), full, atol=1e-5)


def test_a_lazy_model_needed_from_two_threads_at_once_loads_once():
    both_asking = threading.Barrier(2, timeout=10)
    loads = []

    def load():
        loads.append(threading.current_thread().name)
        time.sleep(0.2)  # the other thread asks while this one loads
        return torch.nn.Linear(1, 1)

    lazy = LazyModel(load)
    models = []

    def ask():
        both_asking.wait()
        models.append(lazy.get())

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1 and models[0] is models[1]

"""main.py --reference --fid-features torch-fidelity: FID and KID on torch-fidelity's own
TensorFlow-compatible Inception, checked against torch_fidelity.calculate_metrics on the same
image files, with a random-initialised checkpoint in torch-fidelity's released format."""

from __future__ import annotations

import contextlib
import json
import math
import urllib.error
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torch_fidelity
from PIL import ImageOps
from torch_fidelity import feature_extractor_inceptionv3 as tf_inception
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.utils import extract_featuresdict_from_input_id

from aigc_eval.cli.score import main as main_cli
from aigc_eval.cli.support import EXIT_NO_WEIGHTS
from aigc_eval.scoring.clipscore import ClipScorer
from aigc_eval.scoring.distribution import BACKBONE_FIDELITY, KEY_FID, KEY_KID_MEAN, KEY_KID_STD
from aigc_eval.scoring.fid_features import FIDELITY_WEIGHTS_URL, FidelityInception
from aigc_eval.scoring.inception import InceptionScorer
from aigc_eval.scoring.reference import KEY_FID_FEATURES
from conftest import photo, write_csv
from test_reference import _run

WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"
# Mixed sizes (larger and smaller than 299, not square) and formats: torch-fidelity resizes each
# whole image itself, so our pass must hand it every pixel, undecimated.
GENERATED = [((320, 240), "png"), ((299, 299), "jpg"), ((200, 260), "png"), ((320, 240), "jpg"),
             ((640, 480), "png"), ((320, 240), "png")]
REFERENCE = [((320, 240), "jpg"), ((299, 299), "png"), ((200, 260), "jpg"), ((320, 240), "png"),
             ((480, 640), "jpg")]


@pytest.fixture(scope="session")
def fidelity_weights(tmp_path_factory) -> Path:
    """A random FeatureExtractorInceptionV3 state_dict, the released file's format (its exact keys).

    The constructor always loads weights, so the download and the load are stubbed while it builds
    the random layers. Plain random init shrinks activations layer by layer to nothing, so the
    batch-norm statistics are averaged over a calibration batch, as for the torchvision fixture.
    """
    torch.manual_seed(0)
    with mock.patch.object(tf_inception, "load_state_dict_from_url", lambda *args, **kwargs: {}), \
            mock.patch.object(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None):
        model = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a plain average over the calibration pass
    batch = torch.stack([torch.from_numpy(np.array(photo((299, 299), seed=100 + i))).permute(2, 0, 1)
                         for i in range(8)])
    with torch.no_grad():
        model.train()(batch)
    path = tmp_path_factory.mktemp("torch_fidelity") / WEIGHTS_NAME
    torch.save(model.state_dict(), path)
    return path


def _images(folder: Path, specs, seed: int, grey: bool = False) -> list[Path]:
    folder.mkdir()
    paths = []
    for i, (size, fmt) in enumerate(specs):
        path = folder / f"{i:02d}.{fmt}"  # sorted names: torch-fidelity reads a folder in sorted order
        image = photo(size, seed=seed + i)
        (ImageOps.grayscale(image).convert("RGB") if grey else image).save(path)
        paths.append(path)
    return paths


def _sets(tmp_path: Path) -> tuple[Path, Path, list[Path], list[Path]]:
    # Grey reference photos keep the sets apart (see the agreement test for why that matters).
    gen, ref = _images(tmp_path / "gen", GENERATED, 0), _images(tmp_path / "ref", REFERENCE, 50, grey=True)
    generated = write_csv(tmp_path / "generated.csv", [
        {"id": f"g-{i}", "prompt": "木桌上的咖啡杯", "image_url": str(p), "category": "A" if i < 3 else "B"}
        for i, p in enumerate(gen)])
    reference = write_csv(tmp_path / "reference.csv", [
        {"image_url": f"ref/{p.name}", "category": "A" if i < 3 else "B"} for i, p in enumerate(ref)])
    return generated, reference, gen, ref


def _result(tmp_path) -> dict:
    return json.loads((tmp_path / "dist.json").read_text(encoding="utf-8"))


@contextlib.contextmanager
def _single_threaded():
    """Torch on one thread for the block, ModelLanes included (with one thread it runs no lanes).

    oneDNN's fp32 convolutions round differently with another thread count (our lanes run one
    thread each on 2 cores, torch-fidelity all of them): that moved this random network's
    features by 2.3e-5 (of ~0.9) and FID by 5e-6 relative. Same threads, same arithmetic."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _fid_in_the_span(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """torch-fidelity's FID formula (eigenvalues of S_a S_b) restricted to the span of the centred
    rows, where the covariances live: the same number without ~2040 rounding-level eigenvalues;
    and its own rounding floor. In the span S_a S_b still has (span dims - its rank) zero
    eigenvalues, computed at rounding level (about eps x its norm), and the trace takes their
    square roots: each can add up to sqrt(eps x norm), whose value depends on the BLAS code
    path (6e-10 relative on an AVX-512 Xeon at FID ~2500, under 1e-12 on an AVX2 EPYC)."""
    ca, cb = (x - x.mean(0) for x in (a, b))
    basis = np.linalg.qr(np.vstack([ca, cb]).T)[0]
    s_a, s_b = (np.cov(x @ basis, rowvar=False) for x in (ca, cb))
    diff = a.mean(0) - b.mean(0)
    product = s_a @ s_b
    tr_covmean = np.sum(np.sqrt(np.linalg.eigvals(product).astype("complex128")).real)
    fid = float(diff @ diff + np.trace(s_a) + np.trace(s_b) - 2 * tr_covmean)
    zeros = basis.shape[1] - min(len(a) - 1, len(b) - 1)
    return fid, 2 * zeros * math.sqrt(np.finfo(np.float64).eps * np.linalg.norm(product, 2))


def test_fid_and_kid_agree_with_torch_fidelity_on_the_same_files(tmp_path, clip_dir, inception_weights,
                                                                 fidelity_weights, capsys):
    """Same files, same pixels, same network: the features equal torch-fidelity's own extraction
    bit for bit, and FID and KID equal torch_fidelity.calculate_metrics on the files.

    Pixels: our pass decodes each file whole (no JPEG draft, no reduction), which for these plain
    RGB files without EXIF rotation or alpha is what torch-fidelity's PIL convert("RGB") gives
    (JPEG by the same libjpeg; PNG by pyspng or Pillow, identical); torch-fidelity's TF1 resize to
    299 runs inside the network on both sides.

    The metrics then differ only by torch-fidelity's own rounding, which has two floors (measured
    on these 6 + 5 images; grey reference photos keep the sets apart, FID ~2500, where both stay
    near 1e-6; the bound is 1e-5). Each metric is also checked exactly, to 1e-12, against
    torch-fidelity's formula without that rounding:
    - FID: with fewer images than the 2048 dims, S_a S_b has rank <= n - 1, and torch-fidelity's
      eigvals of the 2048 x 2048 product adds the square roots of ~2040 rounding-level
      eigenvalues (~1e-3 in all) that the exact trace has not: 5.6e-6 relative on two similar
      colour sets (FID ~370). Ours (the SVD route) is exact: it equals torch-fidelity's formula
      applied in the rows' span, where the covariances live.
    - KID: torch-fidelity computes it in float32 (its extractor's output dtype), ours in float64;
      cancellation in its float32 kernel sums costs it up to ~1e-6 here (far more on sets far
      apart). Ours equals its kid_features_to_metric on float64 copies of the same features.
    """
    generated, reference, gen, ref = _sets(tmp_path)
    options = dict(cuda=False, batch_size=1, save_cpu_ram=True, verbose=False)  # batch 1: the sizes differ
    with _single_threaded():
        code = _run(tmp_path, generated, reference, clip_dir, inception_weights, "--fid-features", "torch-fidelity",
                    "--fid-weights", str(fidelity_weights), "--save-features", str(tmp_path / "features"))
        expected = torch_fidelity.calculate_metrics(
            input1=str(tmp_path / "gen"), input2=str(tmp_path / "ref"), fid=True, kid=True,
            kid_subset_size=min(len(gen), len(ref)), feature_extractor="inception-v3-compat",
            feature_extractor_weights_path=str(fidelity_weights), cache=False, **options)
        extractor = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                             feature_extractor_weights_path=str(fidelity_weights))
        theirs = [extract_featuresdict_from_input_id(1, extractor, input1=str(tmp_path / side), **options)["2048"]
                  for side in ("gen", "ref")]
    assert code == 0
    saved = [np.load(tmp_path / "features" / f"{side}_{BACKBONE_FIDELITY}.npy") for side in ("generated", "reference")]
    assert saved[0].shape == (len(gen), 2048) and saved[1].shape == (len(ref), 2048)
    for ours, their in zip(saved, theirs):
        np.testing.assert_array_equal(ours, their.numpy())
    result = _result(tmp_path)
    overall = result["comparisons"]["overall"]
    assert result[KEY_FID_FEATURES]["name"] == "torch-fidelity" and "torch-fidelity" in result["definitions"]["fid"]
    figures = {KEY_FID: ("frechet_inception_distance", overall[KEY_FID]),
               KEY_KID_MEAN: ("kernel_inception_distance_mean", overall[KEY_KID_MEAN]),
               KEY_KID_STD: ("kernel_inception_distance_std", overall[KEY_KID_STD])}
    with capsys.disabled():
        for key, (name, ours) in figures.items():
            print(f"\n{key}: ours {ours!r}, torch-fidelity {expected[name]!r}, relative difference "
                  f"{abs(ours - expected[name]) / abs(expected[name]):.2e}", end="")
    for key, (name, ours) in figures.items():
        assert ours == pytest.approx(expected[name], rel=1e-5), (key, ours, expected[name])
    exact = [f.astype(np.float64) for f in saved]
    fid_exact, floor = _fid_in_the_span(*exact)
    assert abs(overall[KEY_FID] - fid_exact) <= floor, (overall[KEY_FID], fid_exact, floor)
    assert floor < 1e-7 * fid_exact  # still far below torch-fidelity's own 1e-6
    kid64 = kid_features_to_metric(*(torch.from_numpy(f) for f in exact), kid_subset_size=min(len(gen), len(ref)),
                                   kid_subsets=100, rng_seed=2020, verbose=False)
    assert overall[KEY_KID_MEAN] == pytest.approx(kid64["kernel_inception_distance_mean"], rel=1e-12)
    assert overall[KEY_KID_STD] == pytest.approx(kid64["kernel_inception_distance_std"], rel=1e-12)
    report = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert 'data-fid-features="torch-fidelity"' in report


def test_missing_weights_offline_is_one_line_naming_the_file_the_url_and_where(tmp_path, clip_dir,
                                                                                inception_weights, capsys, monkeypatch):
    generated, reference, _, _ = _sets(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))  # torch hub's folder: empty

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)  # no network, as on a locked-down host
    code = _run(tmp_path, generated, reference, clip_dir, inception_weights, "--fid-features", "torch-fidelity")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_NO_WEIGHTS and len(err) == 1, err
    target = tmp_path / "empty-torch-home" / "hub" / "checkpoints" / WEIGHTS_NAME
    assert err[0].startswith("error: torch-fidelity Inception weights not found")
    assert str(target) in err[0] and FIDELITY_WEIGHTS_URL in err[0] and "--fid-weights" in err[0]
    assert not (tmp_path / "clip.csv").exists()  # it failed before any scoring

    code = _run(tmp_path, generated, reference, clip_dir, inception_weights, "--fid-features", "torch-fidelity",
                "--fid-weights", str(tmp_path / "nowhere.pth"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_NO_WEIGHTS and len(err) == 1 and "nowhere.pth: no such file" in err[0], err


def test_a_second_run_computes_nothing_for_either_backbone(tmp_path, clip_dir, inception_weights, fidelity_weights,
                                                           monkeypatch):
    generated, reference, _, _ = _sets(tmp_path)
    fidelity = ["--fid-features", "torch-fidelity", "--fid-weights", str(fidelity_weights)]
    assert _run(tmp_path, generated, reference, clip_dir, inception_weights, *fidelity) == 0
    first = _result(tmp_path)
    assert _run(tmp_path, generated, reference, clip_dir, inception_weights) == 0
    torchvision = _result(tmp_path)
    assert torchvision[KEY_FID_FEATURES]["name"] == "torchvision"
    assert torchvision["comparisons"]["overall"]["fid"] != first["comparisons"]["overall"]["fid"]
    monkeypatch.setattr(FidelityInception, "extract", lambda *a, **k: pytest.fail("ran torch-fidelity's Inception"))
    monkeypatch.setattr(InceptionScorer, "classify", lambda *a, **k: pytest.fail("ran Inception again"))
    monkeypatch.setattr(ClipScorer, "encode_images", lambda *a, **k: pytest.fail("ran CLIP again"))
    assert _run(tmp_path, generated, reference, clip_dir, inception_weights, *fidelity) == 0
    assert _result(tmp_path) == first
    assert _run(tmp_path, generated, reference, clip_dir, inception_weights) == 0
    assert _result(tmp_path) == torchvision


def test_fid_options_need_a_reference_and_the_right_extractor(tmp_path, capsys):
    code = main_cli(["--fid-features", "torch-fidelity", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--fid-features and --fid-weights need --reference" in err[0]

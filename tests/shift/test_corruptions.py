"""The image corruptions: contract (shape, range, determinism), strength in the severity, reference checks."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from uqbench.errors import BadConfig, Unsupported
from uqbench.shift import filters
from uqbench.shift.corruptions import BENCHMARK, CORRUPTIONS, EXTRA, SEVERITIES, applies, corrupt

# corruptions without random draws: the seed changes nothing
DETERMINISTIC = {"defocus_blur", "zoom_blur", "brightness", "contrast", "saturate", "pixelate", "jpeg_compression",
                 "gaussian_blur"}


@functools.lru_cache(maxsize=None)
def clean(case: str) -> torch.Tensor:
    """64 of scikit-learn's digits: 8x8 and 28x28 grey, 32x32 with tinted ink and paper (RGB)."""
    from sklearn.datasets import load_digits

    digits = torch.as_tensor(load_digits().images[:64], dtype=torch.float32)[:, None] / 16
    if case == "grey8":
        return digits
    side = 28 if case == "grey28" else 32
    grey = F.interpolate(digits, size=(side, side), mode="bilinear", align_corners=False).clamp(0, 1)
    if case == "grey28":
        return grey
    ink, paper = torch.tensor([0.9, 0.6, 0.3]).view(1, 3, 1, 1), torch.tensor([0.1, 0.2, 0.5]).view(1, 3, 1, 1)
    return grey * ink + (1 - grey) * paper


@functools.lru_cache(maxsize=None)
def corrupted(case: str, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    return corrupt(clean(case), name, severity, seed)


CASES = ("grey8", "grey28", "rgb32")
PAIRS = [(case, name) for case in CASES for name in CORRUPTIONS if applies(name, 3 if case == "rgb32" else 1)]


def test_names() -> None:
    assert len(BENCHMARK) == 15 and len(EXTRA) == 4 and CORRUPTIONS == BENCHMARK + EXTRA
    assert BENCHMARK[0] == "gaussian_noise" and BENCHMARK[-1] == "jpeg_compression" and SEVERITIES == (1, 2, 3, 4, 5)
    assert [n for n in CORRUPTIONS if not applies(n, 1)] == ["saturate"]
    assert all(applies(n, 3) for n in CORRUPTIONS)


@pytest.mark.parametrize("case,name", PAIRS)
def test_contract(case: str, name: str) -> None:
    x = clean(case)
    before = x.clone()
    for severity in SEVERITIES:
        y = corrupted(case, name, severity)
        assert y.shape == x.shape and y.dtype == torch.float32 and y.device == x.device
        assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
    assert torch.equal(x, before), "the input must not be modified"
    assert not torch.equal(corrupted(case, name, 1), x), "severity 1 must change the clean images"
    again = corrupt(x, name, 3, 0)
    assert torch.equal(again, corrupted(case, name, 3)), "same seed, same bits"
    other = corrupt(x, name, 3, 1)
    assert torch.equal(other, again) == (name in DETERMINISTIC)


def mad(case: str, name: str) -> list[float]:
    """Mean absolute difference from the clean images at each severity."""
    return [(corrupted(case, name, s) - clean(case)).abs().mean().item() for s in SEVERITIES]


# Where the reference's own parameters are not monotone in the mean absolute difference (measured; see
# the module docstring of uqbench.shift.corruptions), the ordering that does hold, as groups of severities
# each non-decreasing, and pairs (weaker, stronger).
GROUPS = {
    "saturate": ((1, 2), (3, 4, 5)),  # desaturation x0.3, x0.1, then oversaturation x1.5, x2, x2.5
    "spatter": ((1, 2, 3), (4, 5)),  # water drops, then mud
    "glass_blur": (),  # one round of swaps (1-3), then two (4-5); within each, more blur smooths swaps away
    "motion_blur": ((1, 2, 3), (4, 5)),  # severities 3 and 4 have the same kernel within 0.3% of its weight
    "elastic_transform": (),  # the CIFAR parameters shrink the displacement as the severity grows
    "frost": ((1, 2, 3),),  # a x + b frost: from 3 to 4 a falls with b fixed, so dark images change less
}
STRONGER = {"glass_blur": tuple((a, b) for a in (1, 2, 3) for b in (4, 5)), "motion_blur": ((3, 5), (2, 4)), "frost": ((2, 4), (2, 5))}


@pytest.mark.parametrize("case,name", PAIRS)
def test_strength_grows_with_severity(case: str, name: str) -> None:
    strength = mad(case, name)
    for group in GROUPS.get(name, (SEVERITIES,)):
        values = [strength[s - 1] for s in group]
        assert values == sorted(values), f"{name} on {case}: {[round(v, 4) for v in strength]}"
    for weak, strong in STRONGER.get(name, ()):
        assert strength[weak - 1] < strength[strong - 1], f"{name} on {case}: {[round(v, 4) for v in strength]}"


def test_any_device_and_shape() -> None:
    x = torch.rand(3, 3, 9, 12)
    for name in CORRUPTIONS:
        assert corrupt(x, name, 5, 0).shape == x.shape


def test_gaussian_blur_is_scipys() -> None:
    from scipy.ndimage import gaussian_filter

    x = clean("rgb32")[:4]
    ours = corrupt(x, "gaussian_blur", 5, 0).numpy()
    ref = gaussian_filter(x.numpy().astype(np.float64), sigma=(0, 0, 1.0, 1.0), mode="nearest", truncate=4.0)
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_motion_kernel_is_imagemagicks() -> None:
    # radius 2 -> 5 taps at offsets (i, 0) along angle 0 and (0, i) along 90 degrees, weights exp(-i^2 / 2 sigma^2)
    k = filters.motion_kernels(2, 1.5, torch.tensor([0.0, 90.0]))
    w = np.exp(-np.arange(5) ** 2 / (2 * 1.5**2))
    np.testing.assert_allclose(k[0, 4, 4:], w / w.sum(), rtol=1e-6)
    np.testing.assert_allclose(k[1, 4:, 4], w / w.sum(), rtol=1e-6)
    assert k.sum((1, 2)).allclose(torch.ones(2))


def test_scale_round_trip_is_exact() -> None:
    x = clean("grey8")
    assert torch.equal(filters.at_reference_scale(x, lambda y, s: y), x)


def test_bad_input() -> None:
    x = clean("grey8")
    with pytest.raises(BadConfig, match="unknown corruption 'fogg'.*gaussian_noise.*saturate"):
        corrupt(x, "fogg", 1, 0)
    with pytest.raises(BadConfig, match="severity 6 .*1, 2, 3, 4, 5"):
        corrupt(x, "fog", 6, 0)
    with pytest.raises(Unsupported, match="saturate"):
        corrupt(x, "saturate", 1, 0)
    with pytest.raises(ValueError, match="H, W >= 8"):
        corrupt(torch.rand(2, 1, 4, 4), "fog", 1, 0)

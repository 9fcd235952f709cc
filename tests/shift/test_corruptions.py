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


def test_motion_taps_are_imagemagicks() -> None:
    # radius 2 -> 5 taps at offsets (i, 0) along angle 0 and (0, i) along 90 degrees, weights exp(-i^2 / 2 sigma^2)
    weights, dy, dx = filters.motion_taps(2, 1.5, torch.tensor([0.0, 90.0]))
    w = np.exp(-np.arange(5) ** 2 / (2 * 1.5**2))
    np.testing.assert_allclose(weights, w / w.sum(), rtol=1e-12)
    assert dx.tolist() == [[0, 1, 2, 3, 4], [0] * 5] and dy.tolist() == [[0] * 5, [0, 1, 2, 3, 4]]


def test_motion_blur_is_the_correlation_with_the_line_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    # brute force: each image correlated with its dense K x K line kernel, edge pixels repeated
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 3, 9, 13, generator=g)
    angles = torch.cat([torch.rand(37, generator=g) * 360 - 180, torch.tensor([0.0, 90.0, -45.0])])
    for radius, sigma in ((2, 1.5), (6.5, 4.0)):
        weights, dy, dx = filters.motion_taps(radius, sigma, angles)
        reach = len(weights) - 1
        kernels = torch.zeros(len(angles), 2 * reach + 1, 2 * reach + 1, dtype=torch.float64)
        for i in range(len(angles)):
            for t in range(len(weights)):
                kernels[i, reach + dy[i, t], reach + dx[i, t]] += weights[t]
        padded = F.pad(x.double(), (reach,) * 4, mode="replicate")
        expected = torch.cat([F.conv2d(padded[i:i + 1], kernels[i].expand(3, 1, -1, -1), groups=3) for i in range(40)])
        for chunk, longest in ((7, 40), (256, 40), (256, 3)):  # runs cut at chunk boundaries and at their length
            monkeypatch.setattr(filters, "ONE_THREAD", longest * 3 * 9 * 13)
            got = filters.motion_blur(x, radius, sigma, angles, chunk=chunk)
            torch.testing.assert_close(got.double(), expected, atol=1e-6, rtol=0)


def test_zoom_is_grid_samples() -> None:
    x = torch.rand(5, 2, 9, 14, generator=torch.Generator().manual_seed(1))
    factors = (1.0, 1.07, 1.25, 2.25)
    for factor in factors:
        theta = torch.tensor([[1 / factor, 0, 0], [0, 1 / factor, 0]]).expand(5, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        expected = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        torch.testing.assert_close(filters.zoom(x, factor), expected, atol=1e-5, rtol=0)
    many = tuple(1 + 0.01 * i for i in range(12))  # 12 (9 + 14) > 9 x 14: the sum as one Kronecker matrix
    for fs in (factors, many):
        torch.testing.assert_close(filters.zoom_sum(x, fs, chunk=2), sum(filters.zoom(x, f) for f in fs))
    assert torch.equal(filters.zoom(x, 1.0), x)


@pytest.mark.parametrize("h,w,shift", [(12, 10, 1), (14, 13, 2), (9, 16, 3)])
def test_glass_waves_make_the_sequential_swaps(h: int, w: int, shift: int) -> None:
    from uqbench.shift.corruptions import _glass_waves, _swap_in_waves

    positions, bounds = _glass_waves(h, w, shift)
    visits = [(r, c) for r in range(h - shift, shift, -1) for c in range(w - shift, shift, -1)]  # the reference's
    assert sorted(positions.tolist()) == sorted(r * w + c for r, c in visits) and bounds[-1] == len(visits)
    wave = {p: k for k in range(len(bounds) - 1) for p in positions[bounds[k]:bounds[k + 1]].tolist()}
    for i, (r, c) in enumerate(visits):
        for q, s in visits[i + 1:]:
            if abs(r - q) < 2 * shift and abs(c - s) < 2 * shift:  # the two may touch a common pixel
                assert wave[r * w + c] < wave[q * w + s]
    n = 16
    g = torch.Generator().manual_seed(2)
    offsets = torch.randint(-shift, shift, (2, n, len(positions)), generator=g)
    partners = positions + offsets[0] * w + offsets[1]
    source = torch.arange(h * w, dtype=torch.int32).repeat(n, 1)
    _swap_in_waves(source, positions, partners, bounds)
    expected = torch.arange(h * w).repeat(n, 1)
    column = {p: v for v, p in enumerate(positions.tolist())}
    for r, c in visits:
        v = column[r * w + c]
        for i in range(n):
            a, b = r * w + c, int(partners[i, v])
            expected[i, a], expected[i, b] = expected[i, b].clone(), expected[i, a].clone()
    assert torch.equal(source.long(), expected)


def test_plasma_fractal_is_the_references() -> None:
    # Hendrycks's diamond-square, written into the full map through strided slices, with the same draws
    def reference(g: torch.Generator, n: int, size: int, decay: float) -> torch.Tensor:
        m = torch.zeros(n, size, size, dtype=torch.float64)
        step, wibble = size, 100.0

        def wibbled(total: torch.Tensor) -> torch.Tensor:
            return total / 4 + wibble * filters.uniform(g, tuple(total.shape), -wibble, wibble, "cpu").double()

        while step >= 2:
            half = step // 2
            corners = m[:, 0::step, 0::step]
            square = corners + corners.roll(-1, 1)
            m[:, half::step, half::step] = wibbled(square + square.roll(-1, 2))
            centres, corners = m[:, half::step, half::step], m[:, 0::step, 0::step]
            m[:, 0::step, half::step] = wibbled(centres + centres.roll(1, 1) + corners + corners.roll(-1, 2))
            m[:, half::step, 0::step] = wibbled(centres + centres.roll(1, 2) + corners + corners.roll(-1, 1))
            step, wibble = half, wibble / decay
        m = m - m.amin((1, 2), keepdim=True)
        return m / m.amax((1, 2), keepdim=True)

    for size, decay in ((8, 3.0), (32, 1.6)):
        expected = reference(torch.Generator().manual_seed(3), 4, size, decay)
        got = filters.plasma_fractal(torch.Generator().manual_seed(3), 4, size, decay, torch.device("cpu"))
        torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=0)


def test_gaussian_blur_matrices_are_scipys() -> None:
    from scipy.ndimage import gaussian_filter

    x = torch.rand(3, 2, 7, 11, generator=torch.Generator().manual_seed(4))
    for sigma, truncate in ((0.6, 4.0), (2.3, 4.0), (1.5, 3.0)):  # kernels longer than the image included
        ref = gaussian_filter(x.double().numpy(), sigma=(0, 0, sigma, sigma), mode="nearest", truncate=truncate)
        np.testing.assert_allclose(filters.gaussian_blur(x, sigma, truncate).numpy(), ref, atol=1e-6)
    assert torch.equal(filters.gaussian_blur(x, 0.1), x)


def test_reference_scale_is_box_resampling() -> None:
    x = clean("grey28")[:8]
    op = lambda y, s: filters.gaussian_blur(y, 0.7 * s) ** 2
    expected = filters.box_resize(op(filters.box_resize(x, 56, 56), 1.75), 28, 28)
    torch.testing.assert_close(filters.at_reference_scale(x, op), expected, atol=1e-6, rtol=0)


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

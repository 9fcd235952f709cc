"""Batched image operations the corruptions are built from: blurs, per-image filters, area resampling, fractals.

Every function takes and returns images as [N, C, H, W] float tensors on any device and works on the whole
batch at once. Random draws come from a CPU `torch.Generator` and are moved to the images' device, so results
do not depend on the device's random number generator.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

#: ITU-R 601 luma weights of (R, G, B), as OpenCV's RGB2GRAY.
LUMA = (0.299, 0.587, 0.114)

#: Side in pixels of the images the reference parameters were set for (CIFAR-10-C).
REFERENCE_SIDE = 32


def uniform(g: torch.Generator, shape: tuple[int, ...], low: float, high: float, device: torch.device) -> Tensor:
    """Uniform draws in [low, high) of `shape`, drawn on the CPU from `g` and moved to `device`."""
    return (torch.rand(shape, generator=g) * (high - low) + low).to(device)


def normal(g: torch.Generator, shape: tuple[int, ...], loc: float, scale: float, device: torch.device) -> Tensor:
    """Normal draws N(loc, scale^2) of `shape`, drawn on the CPU from `g` and moved to `device`."""
    return (torch.randn(shape, generator=g) * scale + loc).to(device)


def grey(x: Tensor) -> Tensor:
    """Luma [N, 1, H, W] of RGB images [N, 3, H, W] (weights `LUMA`); grey images [N, 1, H, W] unchanged."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def colour(rgb: tuple[float, float, float], channels: int, like: Tensor) -> Tensor:
    """An RGB colour in [0, 1] as a [1, C, 1, 1] tensor: itself for C = 3, its luma for C = 1."""
    values = rgb if channels == 3 else (sum(w * c for w, c in zip(LUMA, rgb)),)
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, channels, 1, 1)


def filter2d(x: Tensor, kernel: Tensor, mode: str = "replicate") -> Tensor:
    """Correlate every channel of x [N, C, H, W] with one odd-sized kernel [kh, kw] (padding `mode`)."""
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    padded = F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2), mode=mode).reshape(1, n * c, h + kh - 1, w + kw - 1)
    # every image-channel as a group of one: on a CPU several times faster than a batch of one-channel images
    weight = kernel.to(x)[None, None].expand(n * c, 1, kh, kw)
    return F.conv2d(padded, weight, groups=n * c).reshape(n, c, h, w)


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> Tensor:
    """The sampled, normalised Gaussian of scipy.ndimage / skimage: radius int(truncate * sigma + 0.5)."""
    radius = int(truncate * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).float()


def gaussian_blur(x: Tensor, sigma: float, truncate: float = 4.0) -> Tensor:
    """Separable Gaussian blur of x [N, C, H, W], sigma in pixels, edge pixels repeated (scipy mode 'nearest')."""
    if sigma <= 0:
        return x
    k = gaussian_kernel1d(sigma, truncate)
    return filter2d(filter2d(x, k[None, :]), k[:, None])


def per_image_filter(x: Tensor, kernels: Tensor, chunk: int = 1024) -> Tensor:
    """Correlate image i of x [N, C, H, W] with its own kernel [N, K, K] (K odd), edge pixels repeated.

    Done as an FFT product on the replicate-padded images (padding K // 2 on each side, so the FFT's wrap-around
    never reaches the kept pixels), `chunk` images at a time to bound memory.
    """
    n, c, h, w = x.shape
    r = kernels.shape[-1] // 2
    out = torch.empty_like(x)
    for start in range(0, n, chunk):
        xs = F.pad(x[start:start + chunk], (r, r, r, r), mode="replicate")
        hp, wp = xs.shape[-2:]
        # correlation = convolution with the flipped kernel, centred at index 0 of the FFT grid
        flipped = F.pad(kernels[start:start + chunk].flip(-2, -1), (0, wp - 2 * r - 1, 0, hp - 2 * r - 1))
        flipped = flipped.roll((-r, -r), dims=(-2, -1))[:, None]
        full = torch.fft.irfft2(torch.fft.rfft2(xs) * torch.fft.rfft2(flipped.to(xs)), s=(hp, wp))
        out[start:start + chunk] = full[..., r:r + h, r:r + w]
    return out


def _box_matrix(n_in: int, n_out: int, device: torch.device) -> Tensor:
    """[n_out, n_in] weights of area resampling: each output pixel averages the input it covers, by overlap."""
    edges = torch.arange(n_out + 1, dtype=torch.float64) * (n_in / n_out)
    j = torch.arange(n_in, dtype=torch.float64)[None]
    overlap = (torch.minimum(edges[1:, None], j + 1) - torch.maximum(edges[:-1, None], j)).clamp(min=0)
    return (overlap / overlap.sum(1, keepdim=True)).float().to(device)


def box_resize(x: Tensor, height: int, width: int) -> Tensor:
    """Area (box) resampling of x [N, C, H, W] to [N, C, height, width].

    Integer upscaling repeats pixels and integer downscaling averages blocks, so one after the other is exact.
    """
    rows = _box_matrix(x.shape[-2], height, x.device).to(x.dtype)
    cols = _box_matrix(x.shape[-1], width, x.device).to(x.dtype)
    return rows @ (x @ cols.T)


def at_reference_scale(x: Tensor, op: Callable[[Tensor, float], Tensor]) -> Tensor:
    """Apply a corruption with parameters in pixels so that it keeps its strength relative to the image size.

    The image [N, C, H, W] is upscaled by pixel repetition by f = ceil(32 / min(H, W)) (1 for images of 32
    pixels or more), `op(x, scale)` runs there with scale = f * min(H, W) / 32 (the factor its pixel parameters
    are multiplied by: 1 for 8x8 and 32x32 images, 1.75 for 28x28), and the result is averaged back to H x W.
    Upscaling then averaging is exact, so a corruption that changes nothing leaves the image unchanged, and a
    sub-pixel blur on a small image still blurs in proportion.
    """
    h, w = x.shape[-2:]
    f = max(1, math.ceil(REFERENCE_SIDE / min(h, w)))
    scale = f * min(h, w) / REFERENCE_SIDE
    if f == 1:
        return op(x, scale)
    return box_resize(op(box_resize(x, f * h, f * w), scale), h, w)


def zoom(x: Tensor, factor: float) -> Tensor:
    """Bilinear zoom of x [N, C, H, W] by `factor` >= 1 about the image centre, cropped to H x W."""
    theta = torch.tensor([[1 / factor, 0, 0], [0, 1 / factor, 0]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def motion_kernels(radius: float, sigma: float, angles: Tensor) -> Tensor:
    """ImageMagick's MotionBlurImage kernels [N, K, K], one per angle in degrees (angles [N], on the CPU).

    ImageMagick takes width = 2 * ceil(radius) + 1 taps i = 0 .. width-1 with weights exp(-i^2 / (2 sigma^2))
    (normalised) at the pixel offsets (round(i cos a), round(i sin a)) from the output pixel: a one-sided line
    along the angle. The kernel here is that line on a K x K grid, K = 2 * (width - 1) + 1, centred.
    """
    width = 2 * math.ceil(radius) + 1
    i = torch.arange(width, dtype=torch.float64)
    weights = torch.exp(-(i**2) / (2 * sigma**2))
    weights = weights / weights.sum()
    a = torch.deg2rad(angles.double())[:, None]
    # ceil(v - 0.5) is ImageMagick's rounding (halves go down)
    dx = torch.ceil(i * torch.cos(a) - 0.5).long()
    dy = torch.ceil(i * torch.sin(a) - 0.5).long()
    k = 2 * (width - 1) + 1
    flat = (dy + width - 1) * k + (dx + width - 1)
    kernels = torch.zeros(angles.shape[0], k * k, dtype=torch.float64)
    kernels.scatter_add_(1, flat, weights.expand_as(flat).contiguous())
    return kernels.view(-1, k, k).float()


def plasma_fractal(g: torch.Generator, n: int, size: int, decay: float, device: torch.device) -> Tensor:
    """n diamond-square height maps [n, size, size] in [0, 1] (size a power of two), as Hendrycks's fog.

    Each step sets the new points to the mean of their neighbours (wrapping around) divided by four, as the
    reference does, plus uniform noise in [-wibble^2, wibble^2]; wibble starts at 100 and is divided by `decay`
    after each halving of the step. Each map is then scaled to [0, 1].
    """
    m = torch.zeros(n, size, size, dtype=torch.float64, device=device)
    step, wibble = size, 100.0

    def wibbled(total: Tensor) -> Tensor:
        return total / 4 + wibble * uniform(g, tuple(total.shape), -wibble, wibble, device).double()

    while step >= 2:
        half = step // 2
        corners = m[:, 0::step, 0::step]
        square = corners + corners.roll(-1, 1)
        m[:, half::step, half::step] = wibbled(square + square.roll(-1, 2))
        centres, corners = m[:, half::step, half::step], m[:, 0::step, 0::step]
        m[:, 0::step, half::step] = wibbled(centres + centres.roll(1, 1) + corners + corners.roll(-1, 2))
        m[:, half::step, 0::step] = wibbled(centres + centres.roll(1, 2) + corners + corners.roll(-1, 1))
        step, wibble = half, wibble / decay
    low = m.amin((1, 2), keepdim=True)
    m = m - low
    return (m / m.amax((1, 2), keepdim=True)).float()


def next_power_of_two(n: int) -> int:
    """The smallest power of two >= n."""
    return 1 << (n - 1).bit_length()

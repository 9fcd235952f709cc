"""Batched image operations the corruptions are built from: blurs, motion blur, zoom, area resampling, fractals.

Every function takes and returns images as [N, C, H, W] float tensors on any device and works on the whole
batch at once. Random draws come from a CPU `torch.Generator` and are moved to the images' device, so results
do not depend on the device's random number generator.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

#: ITU-R 601 luma weights of (R, G, B), as OpenCV's RGB2GRAY.
LUMA = (0.299, 0.587, 0.114)

#: Side in pixels of the images the reference parameters were set for (CIFAR-10-C).
REFERENCE_SIDE = 32

#: Elements up to which a torch CPU op runs on one thread (ATen's grain size). Loops of many small ops keep their
#: tensors under it: an op split across threads waits for all of them, for milliseconds on a busy machine.
ONE_THREAD = 32768


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
    """Separable Gaussian blur of x [N, C, H, W], sigma in pixels, edge pixels repeated (scipy mode 'nearest').

    Done as two products with [n, n] matrices that hold the kernel with the repeated edges folded in: on images
    of tens of pixels about twice as fast as a grouped convolution (`filter2d`) on a CPU.
    """
    if sigma <= 0 or int(truncate * sigma + 0.5) == 0:  # no blur, or one tap of weight 1
        return x
    k = gaussian_kernel1d(sigma, truncate).double()
    return _edge_filter_matrix(x.shape[-2], k).to(x) @ (x @ _edge_filter_matrix(x.shape[-1], k).to(x).T)


def _edge_filter_matrix(n: int, kernel: Tensor) -> Tensor:
    """[n, n] float64 matrix of the correlation of n samples with an odd kernel [K], edge samples repeated."""
    r = len(kernel) // 2
    rows = torch.arange(n)[:, None].expand(n, len(kernel))
    cols = (rows + torch.arange(-r, r + 1)).clamp(0, n - 1)
    return torch.zeros(n, n, dtype=torch.float64).index_put_((rows, cols), kernel.expand(n, -1), accumulate=True)


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
    are multiplied by: 1 for 8x8 and 32x32 images, 1.75 for 28x28), and the result is averaged back to H x W
    over f x f blocks (`box_resize` by an integer factor, both ways). Upscaling then averaging is exact, so a
    corruption that changes nothing leaves the image unchanged, and a sub-pixel blur on a small image still
    blurs in proportion.
    """
    h, w = x.shape[-2:]
    f = max(1, math.ceil(REFERENCE_SIDE / min(h, w)))
    scale = f * min(h, w) / REFERENCE_SIDE
    if f == 1:
        return op(x, scale)
    n, c = x.shape[:2]
    repeated = x[:, :, :, None, :, None].expand(n, c, h, f, w, f).reshape(n, c, f * h, f * w)
    return F.avg_pool2d(op(repeated, scale), f)


def zoom_matrix(n: int, factor: float) -> Tensor:
    """[n, n] float64 weights of a bilinear zoom by `factor` >= 1 about the centre along one axis of n pixels.

    Output pixel j reads the input at c + (j - c) / factor, c = (n - 1) / 2, between its two nearest pixels, the
    coordinate clamped to [0, n - 1]: grid_sample's bilinear, border-padded, align_corners=False sampling of
    an affine grid scaled by 1 / factor.
    """
    centre = (n - 1) / 2
    at = (centre + (torch.arange(n, dtype=torch.float64) - centre) / factor).clamp(0, n - 1)
    low = at.floor()
    upper = (at - low)[:, None]
    cols = torch.arange(n, dtype=torch.float64)[None]
    return (cols == low[:, None]) * (1 - upper) + (cols == (low[:, None] + 1)) * upper


def zoom_sum(x: Tensor, factors: Sequence[float], chunk: int = 512) -> Tensor:
    """The sum over `factors` of the bilinear zooms of x [N, C, H, W] about the centre (see `zoom_matrix`).

    A zoom is separable, A_f x B_f^T, so the sum is linear in the H W pixels: one [H W, H W] matrix, the sum of
    the Kronecker products A_f (x) B_f, where that takes fewer products than two stacked ones (H W < F (H + W)
    for F factors: small images, many factors); else x times [B_1^T ... B_F^T] [W, F W], then [A_1 ... A_F]
    [H, F H] times the F results stacked along the rows, `chunk` images at a time.
    """
    n, _, h, w = x.shape
    rows, cols = [zoom_matrix(h, f) for f in factors], [zoom_matrix(w, f) for f in factors]
    if h * w < len(factors) * (h + w):
        total = sum(torch.kron(a, b) for a, b in zip(rows, cols)).to(x)
        return (x.flatten(2) @ total.T).view_as(x)
    stacked_rows = torch.cat(rows, 1).to(x)  # [H, F H]
    stacked_cols = torch.cat([b.T for b in cols], 1).to(x)  # [W, F W]
    out = torch.empty_like(x)
    for start in range(0, n, chunk):
        part = (x[start:start + chunk] @ stacked_cols).unflatten(-1, (len(factors), w))  # [n, C, H, F, W]
        out[start:start + chunk] = stacked_rows @ part.transpose(-3, -2).flatten(-3, -2)
    return out


def zoom(x: Tensor, factor: float) -> Tensor:
    """Bilinear zoom of x [N, C, H, W] by `factor` >= 1 about the image centre, cropped to H x W (x for 1)."""
    return x if factor == 1 else zoom_sum(x, (factor,))


def motion_taps(radius: float, sigma: float, angles: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """ImageMagick's MotionBlurImage line, one per angle in degrees (angles [N], on the CPU).

    ImageMagick takes width = 2 * ceil(radius) + 1 taps i = 0 .. width-1 with weights exp(-i^2 / (2 sigma^2))
    (normalised) at the pixel offsets (round(i cos a), round(i sin a)) (columns, rows) from the output pixel: a
    one-sided line along the angle.

    Returns:
        weights [T] float64 summing to 1, row offsets dy [N, T] and column offsets dx [N, T] (int64).
    """
    i = torch.arange(2 * math.ceil(radius) + 1, dtype=torch.float64)
    weights = torch.exp(-(i**2) / (2 * sigma**2))
    a = torch.deg2rad(angles.double())[:, None]
    # ceil(v - 0.5) is ImageMagick's rounding (halves go down)
    dx = torch.ceil(i * torch.cos(a) - 0.5).long()
    dy = torch.ceil(i * torch.sin(a) - 0.5).long()
    return weights / weights.sum(), dy, dx


def motion_blur(x: Tensor, radius: float, sigma: float, angles: Tensor, chunk: int = 512) -> Tensor:
    """ImageMagick's motion blur of image i of x [N, C, H, W] along angles[i] degrees, edge pixels repeated.

    out[i, :, r, c] = sum_t weights_t x[i, :, r + dy_it, c + dx_it] over the taps of `motion_taps`, as shifted
    slices of the images padded as far as the lines reach, `chunk` images at a time. The images are taken in
    order of angle, so that a tap's offset is mostly the same for neighbours: one slice for a run of them, of at
    most `ONE_THREAD` elements.
    """
    weights, dy, dx = motion_taps(radius, sigma, angles)
    top, bottom = max(0, -int(dy.min())), max(0, int(dy.max()))
    left, right = max(0, -int(dx.min())), max(0, int(dx.max()))
    order = angles.argsort()
    dy, dx = dy[order] + top, dx[order] + left  # [N, T]: where each image's slice starts in the padded image
    first = torch.ones_like(dy, dtype=torch.bool)  # the first image of each run of equal offsets, in each chunk
    first[1:] = (dy[1:] != dy[:-1]) | (dx[1:] != dx[:-1])
    first[::chunk] = True
    rows, cols = dy.T.tolist(), dx.T.tolist()
    order = order.to(x.device)
    n, c, h, w = x.shape
    longest = max(1, ONE_THREAD // (c * h * w))
    blurred = torch.zeros_like(x)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        padded = F.pad(x.index_select(0, order[start:stop]), (left, right, top, bottom), mode="replicate")
        runs: list[list[int]] = [[] for _ in rows]
        for t, i in first[start:stop].T.nonzero().tolist():
            runs[t].append(start + i)
        for weight, r, q, firsts in zip(weights.tolist(), rows, cols, runs):
            for a, b in zip(firsts, firsts[1:] + [stop]):
                shifted, target = padded[a - start:b - start, :, r[a]:r[a] + h, q[a]:q[a] + w], blurred[a:b]
                for p in range(0, b - a, longest):
                    target[p:p + longest].add_(shifted[p:p + longest], alpha=weight)
    return torch.empty_like(x).index_copy_(0, order, blurred)


def plasma_fractal(g: torch.Generator, n: int, size: int, decay: float, device: torch.device) -> Tensor:
    """n diamond-square height maps [n, size, size] in [0, 1] (size a power of two), as Hendrycks's fog.

    Each step sets the new points to the mean of their neighbours (wrapping around) divided by four, as the
    reference does, plus uniform noise in [-wibble^2, wibble^2]; wibble starts at 100 and is divided by `decay`
    after each halving of the step. Each map is then scaled to [0, 1].

    The reference writes each step's points into the full map through strided slices; here the map of the points
    set so far, k x k, is interleaved with the step's three new k x k grids into the 2k x 2k map of the next step
    (the same values from the same draws, in contiguous memory), in float32 where the reference has float64.
    """
    grid = torch.zeros(n, 1, 1, device=device)
    wibble = 100.0

    def wibbled(total: Tensor) -> Tensor:
        return total / 4 + wibble * uniform(g, tuple(total.shape), -wibble, wibble, device)

    while grid.shape[-1] < size:
        k = grid.shape[-1]
        square = grid + grid.roll(-1, 1)
        centres = wibbled(square + square.roll(-1, 2))  # the points at (half, half) of each square
        rows = wibbled(centres + centres.roll(1, 1) + grid + grid.roll(-1, 2))  # at (0, half)
        cols = wibbled(centres + centres.roll(1, 2) + grid + grid.roll(-1, 1))  # at (half, 0)
        upper = torch.stack((grid, rows), -1).view(n, k, 2 * k)
        lower = torch.stack((cols, centres), -1).view(n, k, 2 * k)
        grid = torch.stack((upper, lower), 2).view(n, 2 * k, 2 * k)
        wibble /= decay
    grid = grid - grid.amin((1, 2), keepdim=True)
    return grid / grid.amax((1, 2), keepdim=True)


def next_power_of_two(n: int) -> int:
    """The smallest power of two >= n."""
    return 1 << (n - 1).bit_length()

"""The image corruptions of Hendrycks & Dietterich (ICLR 2019), as batched, seeded tensor operations.

`corrupt(images, name, severity, seed)` returns corrupted copies of images [N, C, H, W] in [0, 1] with the
parameters of the CIFAR-10-C generator (`ImageNet-C/create_c/make_cifar_c.py` in github:hendrycks/robustness),
for the 15 benchmark corruptions and the 4 extra ones, at severities 1-5.

Image size. The reference parameters are for 32x32 images. Parameters given in pixels (blur sigmas and radii,
glass-blur displacement, motion length, the grain of snow and spatter) keep their strength relative to the
image: those corruptions run on the image upscaled by pixel repetition to at least 32 pixels, with the pixel
parameters scaled to that size, and are averaged back (`filters.at_reference_scale`). Elastic transform is
already written relative to the image side, zoom blur and pixelate in ratios; fog draws its texture at the
image's size, frost crops it from textures four times that size. Noise, brightness, contrast, saturate and JPEG
act pixel by pixel or block by block.

Departures from the reference (each also in the function's docstring):
- results are float32 in [0, 1], not rounded down to uint8 (also not between the steps of glass blur, snow);
- frost blends crops of five seeded procedural textures drawn per call, not of the frost photos that ship with
  the reference;
- motion blur (also in snow) is a torch version of ImageMagick's line kernel, not a call to ImageMagick;
- spatter's water drops are shaded by their own intensity, not by OpenCV's Canny edges, distance transform and
  histogram equalisation;
- elastic transform resamples once (affine and elastic displacement composed), not twice, and smooths the
  displacement field with repeated, not mirrored, edges;
- zoom blur zooms about the image centre with bilinear sampling (scipy's zoom of a centre crop in the reference);
- pixelate uses area resampling both ways (PIL's BOX filter in the reference).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import warnings
from typing import Callable

import torch
from torch import Tensor

from uqbench.errors import BadConfig, Unsupported
from uqbench.shift import filters as fl

BENCHMARK: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
EXTRA: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
CORRUPTIONS: tuple[str, ...] = BENCHMARK + EXTRA
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

_COLOUR_ONLY = frozenset({"saturate"})

Corruption = Callable[[Tensor, int, torch.Generator], Tensor]


def applies(name: str, channels: int) -> bool:
    """Whether corruption `name` is defined for images with `channels` channels (1 or 3).

    Saturate changes the saturation of colours and is undefined on grey images: it does not apply to C = 1.
    Every other corruption applies to both.
    """
    _check_name(name)
    return channels == 3 or name not in _COLOUR_ONLY


def corrupt(images: Tensor, name: str, severity: int, seed: int) -> Tensor:
    """A corrupted copy of `images`: a pure function of (images, name, severity, seed).

    Args:
        images: [N, C, H, W] float32 in [0, 1] on any device, C in {1, 3}, H and W >= 8.
        name: one of `CORRUPTIONS`.
        severity: one of `SEVERITIES`.
        seed: seeds every random draw, with `name` and `severity`; draws are made on the CPU.

    Returns:
        [N, C, H, W] float32 in [0, 1] on the device of `images`.

    Raises:
        BadConfig: unknown name or severity.
        Unsupported: a colour-only corruption asked for grey images (see `applies`).
        ValueError: images of the wrong shape or dtype.
    """
    _check_name(name)
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise BadConfig(f"corruption severity {severity!r} is not valid; expected one of 1, 2, 3, 4, 5")
    if images.ndim != 4 or images.shape[1] not in (1, 3) or min(images.shape[-2:]) < 8:
        raise ValueError(f"images must be [N, C, H, W] with C in (1, 3) and H, W >= 8; got {list(images.shape)}")
    if images.dtype != torch.float32:
        raise ValueError(f"images must be float32; got {images.dtype}")
    if not applies(name, images.shape[1]):
        raise Unsupported(f"corruption {name!r} is a colour operation and does not apply to grey (1-channel) images")
    generator = torch.Generator().manual_seed(_stream(seed, name, severity))
    return _FUNCTIONS[name](images, severity, generator).clamp(0, 1).float()


def _check_name(name: str) -> None:
    if name not in _FUNCTIONS:
        raise BadConfig(f"unknown corruption {name!r}; expected one of {', '.join(CORRUPTIONS)}")


def _stream(seed: int, name: str, severity: int) -> int:
    """A 63-bit generator seed from (seed, name, severity): each corruption and severity has its own draws."""
    digest = hashlib.sha256(f"{int(seed)}/{name}/{severity}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


# ---- noise ----

def gaussian_noise(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """x + N(0, c^2) per pixel and channel, c = 0.04 .. 0.10."""
    c = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]
    return x + fl.normal(g, tuple(x.shape), 0.0, c, x.device)


def shot_noise(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """Poisson(x c) / c, c = 500 .. 50 photons at full intensity (the Poisson draw itself runs on the CPU)."""
    c = (500, 250, 100, 75, 50)[severity - 1]
    return (torch.poisson(x.cpu() * c, generator=g) / c).to(x.device)


def impulse_noise(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """Salt and pepper (skimage's 's&p'): each value, with probability c = 0.01 .. 0.07, becomes 0 or 1 evenly."""
    c = (0.01, 0.02, 0.03, 0.05, 0.07)[severity - 1]
    hit = fl.uniform(g, tuple(x.shape), 0, 1, x.device) < c
    salt = fl.uniform(g, tuple(x.shape), 0, 1, x.device) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


def speckle_noise(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """x + x N(0, c^2), c = 0.06 .. 0.20."""
    c = (0.06, 0.1, 0.12, 0.16, 0.2)[severity - 1]
    return x + x * fl.normal(g, tuple(x.shape), 0.0, c, x.device)


# ---- blur ----

def gaussian_blur(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """Gaussian blur, sigma = 0.4 .. 1 pixel of a 32-pixel image (skimage's `gaussian`, edges repeated)."""
    c = (0.4, 0.6, 0.7, 0.8, 1.0)[severity - 1]
    return fl.at_reference_scale(x, lambda y, s: fl.gaussian_blur(y, c * s))


def defocus_blur(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """A disk kernel (radius r) smoothed by a 3x3 Gaussian (sigma a), as the reference; edges mirrored.

    (r, a) = (0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1) pixels of a 32-pixel image.
    """
    radius, alias = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))[severity - 1]
    return fl.at_reference_scale(x, lambda y, s: fl.filter2d(y, _disk(radius * s, alias * s), mode="reflect"))


def _disk(radius: float, alias_sigma: float) -> Tensor:
    """The reference's aliased disk (pixels with i^2 + j^2 <= r^2, normalised) smoothed by a 3x3 Gaussian."""
    half = math.floor(radius) + 1
    t = torch.arange(-half, half + 1, dtype=torch.float64)
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= radius**2).double()
    disk = disk / disk.sum()
    g3 = torch.exp(-(torch.arange(-1, 2, dtype=torch.float64) ** 2) / (2 * alias_sigma**2))
    g3 = g3 / g3.sum()
    smooth = torch.nn.functional.conv2d(disk[None, None], (g3[:, None] * g3[None, :])[None, None], padding=1)
    return smooth[0, 0].float()


def motion_blur(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """ImageMagick's motion blur (radius, sigma) at a uniform angle in [-45, 45) degrees per image.

    (radius, sigma) = (6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5) pixels of a 32-pixel image; a torch line filter
    (`filters.motion_blur`) in place of the reference's call to ImageMagick.
    """
    radius, sigma = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))[severity - 1]
    angles = torch.rand(x.shape[0], generator=g) * 90 - 45

    return fl.at_reference_scale(x, lambda y, s: fl.motion_blur(y, radius * s, sigma * s, angles))


def zoom_blur(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """The mean of the image and its centre zooms by 1, 1.01, ... up to 1.06 .. 1.25.

    The factors are numpy's arange(1, top, 0.01) as in the reference, float quirks included (7, 12, 16, 21, 26
    zooms). Zoom is relative, so this runs at the image's own size.
    """
    top = (1.06, 1.11, 1.16, 1.21, 1.26)[severity - 1]
    factors = torch.arange(1, top, 0.01, dtype=torch.float64).tolist()
    return (x + fl.zoom_sum(x, factors)) / (len(factors) + 1)


def glass_blur(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """Gaussian blur, local pixel swaps, Gaussian blur again; (sigma, max shift, rounds) as the reference.

    (sigma, shift, rounds) = (0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2), sigma and shift
    in pixels of a 32-pixel image (shift at least 1). Each round visits the pixels from the bottom-right corner
    as the reference does and swaps each with the pixel at an offset drawn from [-shift, shift) in each axis
    (numpy's randint excludes the top, so pixels drift up and left, as in CIFAR-10-C). The result is that of the
    reference's sequence of swaps; they run in waves of visits that cannot touch the same pixel
    (`_glass_waves`), for a batch of images at once, each image with its own offsets.
    """
    sigma, shift, rounds = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))[severity - 1]

    def glass(y: Tensor, s: float) -> Tensor:
        y = fl.gaussian_blur(y, sigma * s)
        n, c, h, w = y.shape
        source = _glass_shuffle(g, n, h, w, max(1, round(shift * s)), rounds).to(y.device)
        y = y.flatten(2).gather(2, source.long()[:, None].expand(n, c, h * w)).view(n, c, h, w)
        return fl.gaussian_blur(y, sigma * s)

    return fl.at_reference_scale(x, glass)


def _glass_shuffle(g: torch.Generator, n: int, h: int, w: int, shift: int, rounds: int) -> Tensor:
    """[n, h * w] source index (int32) of each pixel after the reference's sequence of local swaps (on the CPU).

    Each visit's offset (dy, dx), uniform on [-shift, shift)^2, is one float32 uniform draw (24 random bits)
    scaled to the m = (2 shift)^2 offsets: exact when m is a power of two, else each offset's probability is off
    by less than m / 2^24 of it. The images are shuffled a chunk at a time, so that the ops of a wave hold at
    most `filters.ONE_THREAD` elements.
    """
    positions, bounds = _glass_waves(h, w, shift)
    chunk = max(1, fl.ONE_THREAD // max(b - a for a, b in itertools.pairwise(bounds)))
    offsets = torch.tensor([dy * w + dx for dy in range(-shift, shift) for dx in range(-shift, shift)])
    sources = []
    for start in range(0, n, chunk):
        source = torch.arange(h * w, dtype=torch.int32).repeat(min(chunk, n - start), 1)
        for _ in range(rounds):
            picks = (torch.rand((len(source), len(positions)), generator=g) * len(offsets)).long()
            _swap_in_waves(source, positions, positions + offsets.take(picks), bounds)
        sources.append(source)
    return torch.cat(sources)


def _swap_in_waves(source: Tensor, positions: Tensor, partners: Tensor, bounds: tuple[int, ...]) -> None:
    """Swap source[i, positions[v]] and source[i, partners[i, v]] for every visit v, wave by wave, in place.

    source [n, h * w]; positions [P] and bounds from `_glass_waves`; partners [n, P]. The result is that of the
    swaps one after the other in the reference's order.
    """
    n = source.shape[0]
    for a, b in itertools.pairwise(bounds):
        # the pixels of a wave's visits are disjoint, so its swaps can be made at once
        here, there = positions[a:b].expand(n, b - a), partners[:, a:b]
        moved = source.gather(1, here)
        source.scatter_(1, here, source.gather(1, there))
        source.scatter_(1, there, moved)


@functools.lru_cache(maxsize=16)
def _glass_waves(h: int, w: int, shift: int) -> tuple[Tensor, tuple[int, ...]]:
    """The visits of glass blur's swaps in the reference's order, scheduled in waves of independent swaps.

    The reference visits rows, then columns, from the bottom-right. The visit of pixel (r, c) swaps it with one
    in rows r - shift .. r + shift - 1 and columns alike, so two visits can touch a common pixel only if they
    are less than 2 shift apart in both rows and columns. Each visit goes in the wave after the last of the
    earlier visits it may share a pixel with: the visits of a wave touch disjoint pixels whatever the offsets,
    and every pair that may share one keeps the reference's order, so the waves compose to the same
    permutation as the visits one by one (256 waves of 2704 visits for 56 x 56 images and shift 2).

    Returns:
        positions [P]: the flat pixel index of each visit, wave after wave; bounds: where each wave starts in
        `positions`, and P at the end.
    """
    reach = 2 * shift - 1
    visits = [(r, c) for r in range(h - shift, shift, -1) for c in range(w - shift, shift, -1)]
    wave_of: dict[tuple[int, int], int] = {}
    for r, c in visits:
        earlier = [wave_of.get((r + i, c + j), -1) for i in range(reach + 1) for j in range(-reach, reach + 1)
                   if i > 0 or j > 0]
        wave_of[(r, c)] = 1 + max(earlier)
    scheduled = sorted(visits, key=wave_of.__getitem__)  # stable: the reference's order within a wave
    sizes = torch.bincount(torch.tensor([wave_of[v] for v in visits]))
    return torch.tensor([r * w + c for r, c in scheduled]), (0, *sizes.cumsum(0).tolist())


# ---- weather ----

def snow(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """Flakes: thresholded, zoomed Gaussian noise, motion-blurred at an angle in [-135, -45), added twice
    (the second copy rotated by 180 degrees) to the image brightened towards 1.5 grey + 0.5.

    Parameters (loc, scale, zoom, threshold, blur radius, blur sigma, blend) as the reference; the noise grain and
    the blur are in pixels of a 32-pixel image, the layer is made at that scale (`filters.at_reference_scale`).
    """
    loc, scale, factor, threshold, radius, sigma, blend = (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    )[severity - 1]
    n, _, h, w = x.shape
    angles = torch.rand(n, generator=g) * 90 - 135

    def layer(y: Tensor, s: float) -> Tensor:
        flakes = fl.zoom(fl.normal(g, (n, 1, *y.shape[-2:]), loc, scale, y.device), factor * s)
        flakes = torch.where(flakes < threshold, 0, flakes).clamp(0, 1)
        return fl.motion_blur(flakes, radius * s, sigma * s, angles)

    flakes = fl.at_reference_scale(x[:, :1], layer)
    x = blend * x + (1 - blend) * torch.maximum(x, fl.grey(x) * 1.5 + 0.5)
    return x + flakes + flakes.flip(-2, -1)


def frost(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """a x + b frost, (a, b) = (1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45), as the reference.

    As the reference does with its five frost photos, each image gets a random crop of one of five frost
    textures, drawn for the call (`_frost_texture`). The textures are not the reference's photos but seeded
    procedural ones, of four times the image's side rounded up to a power of two (the photos are two to six
    times the side of their crops), with the mean colour (0.57, 0.66, 0.70) and the local contrast (std 0.1
    within each crop) measured on the reference's frost photos at the size the reference crops them from.
    """
    a, b = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))[severity - 1]
    return a * x + b * _frost_texture(g, x)


_FROST_RGB = (0.57, 0.66, 0.70)

#: Frost textures drawn for a call, as the reference's photos (it draws from the first five of its six).
_FROST_BANK = 5


def _frost_texture(g: torch.Generator, like: Tensor) -> Tensor:
    """[N, C, H, W] in [0, 1]: crops of ridges of a rough plasma fractal (ice veins) over a smoother one."""
    n, c, h, w = like.shape
    size = 4 * fl.next_power_of_two(max(h, w))
    veins = 1 - (2 * fl.plasma_fractal(g, _FROST_BANK, size, 1.6, like.device) - 1).abs()
    bank = veins**3 + fl.plasma_fractal(g, _FROST_BANK, size, 2.2, like.device)  # [bank, size, size]
    pick, top, left = (torch.randint(0, high, (n, 1, 1), generator=g) for high in
                       (_FROST_BANK, size - h + 1, size - w + 1))
    rows, cols = torch.arange(h)[:, None], torch.arange(w)
    texture = bank.take(((pick * size + top + rows) * size + left + cols).to(like.device))[:, None]
    texture = (texture - texture.mean((2, 3), keepdim=True)) / texture.std((2, 3), keepdim=True).clamp_min(1e-6)
    return (fl.colour(_FROST_RGB, c, like) + 0.1 * texture).clamp(0, 1)


def fog(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """(x + a plasma) * max / (max + a), max = the image's largest value; (a, decay) as the reference.

    (a, decay) = (0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75); the plasma fractal (one per image, shared
    by the channels) is drawn on the smallest power-of-two square covering the image and cropped.
    """
    a, decay = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))[severity - 1]
    n, _, h, w = x.shape
    size = fl.next_power_of_two(max(h, w))
    plasma = fl.plasma_fractal(g, n, size, decay, x.device)[:, None, :h, :w]
    peak = x.amax((1, 2, 3), keepdim=True)
    return (x + a * plasma) * peak / (peak + a)


def spatter(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """Water drops (severities 1-3, pale turquoise, added) or mud (4-5, brown, covering), as the reference.

    A liquid layer of Gaussian noise (loc, scale) is blurred (sigma) and thresholded; sigmas are in pixels of a
    32-pixel image. Water: the drops add c * layer / max(layer) of the colour (the reference shades them by
    OpenCV's edge distance transform; this uses the layer's own intensity). Mud: the blurred drop mask, kept where
    >= 0.8, mixes in the colour. Grey images get the colour's luma.
    """
    loc, scale, sigma, threshold, strength, mud = (
        (0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    )[severity - 1]
    n, c, h, w = x.shape

    def layer(y: Tensor, s: float) -> Tensor:
        liquid = fl.gaussian_blur(fl.normal(g, (n, 1, *y.shape[-2:]), loc, scale, y.device), sigma * s)
        if mud:
            mask = fl.gaussian_blur((liquid > threshold).float(), strength * s)
            return torch.where(mask < 0.8, 0, mask)
        return torch.where(liquid < threshold, 0, liquid)

    m = fl.at_reference_scale(x[:, :1], layer)
    if mud:
        return x * (1 - m) + fl.colour((63 / 255, 42 / 255, 20 / 255), c, x) * m
    m = strength * m / m.amax((2, 3), keepdim=True).clamp_min(1e-12)
    return x + m * fl.colour((175 / 255, 238 / 255, 238 / 255), c, x)


# ---- digital ----

def brightness(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """HSV value + c (clipped to 1), c = 0.05 .. 0.3: every channel scales by V' / V (black becomes grey c)."""
    c = (0.05, 0.1, 0.15, 0.2, 0.3)[severity - 1]
    value = x.amax(1, keepdim=True)
    lifted = (value + c).clamp(max=1)
    return torch.where(value > 0, x * lifted / value.clamp_min(1e-12), lifted)


def contrast(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """(x - mean) c + mean per image and channel, c = 0.75 .. 0.15."""
    c = (0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]
    mean = x.mean((2, 3), keepdim=True)
    return (x - mean) * c + mean


def saturate(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """HSV saturation S -> clip(S a + b, 0, 1), hue and value kept; RGB only (see `applies`).

    (a, b) = (0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2). With hue and value fixed, each channel is
    V - (V - x) S' / S; a grey pixel (S = 0) has hue 0 in skimage and becomes red-tinted when b > 0.
    """
    a, b = ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2))[severity - 1]
    value = x.amax(1, keepdim=True)
    sat = torch.where(value > 0, (value - x.amin(1, keepdim=True)) / value.clamp_min(1e-12), 0)
    new = (sat * a + b).clamp(0, 1)
    tinted = value - value * new * torch.tensor([0.0, 1.0, 1.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return torch.where(sat > 0, value - (value - x) * new / sat.clamp_min(1e-12), tinted)


def pixelate(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """Area downscale to int(side c) then back, c = 0.95 .. 0.65."""
    c = (0.95, 0.9, 0.85, 0.75, 0.65)[severity - 1]
    h, w = x.shape[-2:]
    return fl.box_resize(fl.box_resize(x, int(h * c), int(w * c)), h, w)


def jpeg_compression(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """JPEG at quality 80 .. 40 (libjpeg through torchvision, one image at a time on the CPU)."""
    from torchvision.io import decode_jpeg, encode_jpeg

    quality = (80, 65, 58, 50, 40)[severity - 1]
    pixels = (x * 255).round().to(torch.uint8).cpu()
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its codecs in favour of torchcodec
        warnings.filterwarnings("ignore", "The image decoding and encoding", DeprecationWarning)
        decoded = decode_jpeg(encode_jpeg(list(pixels), quality=quality))
    return (torch.stack(decoded).float() / 255).to(x.device)


def elastic_transform(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """A random affine warp and a smooth random displacement field, sizes relative to the image side L.

    (alpha, sigma, affine) = L x (0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
    (0.1, 0.03, 0.03), as the reference with L = 32: three points at the centre +- L // 3 move by up to
    `affine`, the field is alpha x (uniform noise blurred by sigma, truncated at 3 sigma); edges mirrored.
    """
    alpha, sigma, affine = ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
                            (0.1, 0.03, 0.03))[severity - 1]
    n, _, h, w = x.shape
    side = min(h, w)
    alpha, sigma, affine = alpha * side, sigma * side, affine * side
    centre, half = torch.tensor([w // 2, h // 2], dtype=torch.float64), side // 3  # (x, y)
    src = torch.stack([centre + half, centre + torch.tensor([half, -half]), centre - half])
    dst = src + torch.rand(n, 3, 2, generator=g, dtype=torch.float64) * 2 * affine - affine
    # the map from output to input points: solve [dst, 1] @ T = src for each image
    ones = torch.ones(n, 3, 1, dtype=torch.float64)
    inverse = torch.linalg.solve(torch.cat([dst, ones], 2), src.expand(n, 3, 2)).float().to(x.device)
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    points = torch.stack([xs, ys], -1).float().expand(n, h, w, 2)
    if alpha > 0:
        field = fl.uniform(g, (n, 2, h, w), -1, 1, x.device)
        points = points + alpha * fl.gaussian_blur(field, sigma, truncate=3.0).permute(0, 2, 3, 1)
    mapped = points @ inverse[:, None, :2] + inverse[:, None, 2:]
    grid = torch.stack([2 * mapped[..., 0] / (w - 1) - 1, 2 * mapped[..., 1] / (h - 1) - 1], -1)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=True)


_FUNCTIONS: dict[str, Corruption] = {name: globals()[name] for name in CORRUPTIONS}

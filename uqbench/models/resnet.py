"""Residual networks for small images: a CPU-sized CIFAR ResNet, ResNet-18 (CIFAR variant) and WRN-28-10.

- `resnet-small`: the CIFAR ResNet of He et al. (2016, §4.2) with three stages of `width`, 2 `width` and
  4 `width` channels and `depth` post-activation basic blocks per stage (ResNet-(6 `depth` + 2)).
- `resnet18`: ResNet-18 as used on CIFAR (3x3 stem, no max-pool), four stages of `width` .. 8 `width` channels
  and `depth` basic blocks per stage.
- `wrn-28-10`: the Wide ResNet of Zagoruyko & Komodakis (2016) used by the SNGP and VBLL papers: a 16-channel
  stem, three stages of `width`, 2 `width`, 4 `width` channels and `depth` pre-activation blocks per stage.

Each network's width and depth are its registered defaults (`BackboneConfig(arch=...)` fills them in). The dropout
variant (MC dropout) drops activations between the two convolutions of every block, as in the Wide ResNet
paper; the spectral-norm variant (SNGP) softly bounds every convolution, the shortcut projections included.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from uqbench.models import BackboneSpec, architecture
from uqbench.models.spectral import spectral_normalise

def _conv(c_in: int, c_out: int, kernel: int, stride: int, bound: float | None) -> nn.Module:
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)
    return spectral_normalise(conv, bound)


def _dropout(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()


class BasicBlock(nn.Module):
    """Post-activation block: relu(bn(conv(drop(relu(bn(conv(x)))))) + shortcut(x)).

    [B, c_in, H, W] -> [B, c_out, H / stride, W / stride].
    """

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float, bound: float | None):
        super().__init__()
        self.conv1, self.bn1 = _conv(c_in, c_out, 3, stride, bound), nn.BatchNorm2d(c_out)
        self.drop = _dropout(dropout)
        self.conv2, self.bn2 = _conv(c_out, c_out, 3, 1, bound), nn.BatchNorm2d(c_out)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(_conv(c_in, c_out, 1, stride, bound), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: Tensor) -> Tensor:
        h = self.drop(F.relu(self.bn1(self.conv1(x))))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class WideBlock(nn.Module):
    """Pre-activation block: conv(drop(relu(bn(conv(a))))) + shortcut, a = relu(bn(x)); shapes as `BasicBlock`."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float, bound: float | None):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), _conv(c_in, c_out, 3, stride, bound)
        self.bn2, self.drop = nn.BatchNorm2d(c_out), _dropout(dropout)
        self.conv2 = _conv(c_out, c_out, 3, 1, bound)
        self.shortcut = None if stride == 1 and c_in == c_out else _conv(c_in, c_out, 1, stride, bound)

    def forward(self, x: Tensor) -> Tensor:
        a = F.relu(self.bn1(x))
        h = self.conv2(self.drop(F.relu(self.bn2(self.conv1(a)))))
        return h + (x if self.shortcut is None else self.shortcut(a))


class ResNet(nn.Module):
    """x [B, C, H, W] -> features [B, widths[-1]] (global average pooling after the last stage).

    Args:
        in_channels: C of the input images.
        stem: channels of the first 3x3 convolution.
        widths: channels of each stage; every stage after the first halves the resolution.
        blocks: blocks per stage.
        preact: pre-activation `WideBlock`s (stem without BN, final BN-ReLU) instead of `BasicBlock`s.
        dropout: dropout probability inside every block (0 = none).
        spectral_norm: soft bound on the spectral norm of every convolution (None = no normalisation).
    """

    def __init__(
        self,
        in_channels: int,
        stem: int,
        widths: tuple[int, ...],
        blocks: int,
        preact: bool,
        dropout: float = 0.0,
        spectral_norm: float | None = None,
    ):
        super().__init__()
        block = WideBlock if preact else BasicBlock
        layers: list[nn.Module] = [_conv(in_channels, stem, 3, 1, spectral_norm)]
        if not preact:
            layers += [nn.BatchNorm2d(stem), nn.ReLU()]
        channels = stem
        for i, width in enumerate(widths):
            for j in range(blocks):
                stride = 2 if i > 0 and j == 0 else 1
                layers.append(block(channels, width, stride, dropout, spectral_norm))
                channels = width
        if preact:
            layers += [nn.BatchNorm2d(channels), nn.ReLU()]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.out_features = channels

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


@architecture("resnet-small", width=16, depth=1)
def build_resnet_small(spec: BackboneSpec, *, dropout: float = 0.0, spectral_norm: float | None = None) -> nn.Module:
    w = spec.width
    return ResNet(spec.in_shape[0], w, (w, 2 * w, 4 * w), spec.depth, False, dropout, spectral_norm)


@architecture("resnet18", width=64, depth=2)
def build_resnet18(spec: BackboneSpec, *, dropout: float = 0.0, spectral_norm: float | None = None) -> nn.Module:
    w = spec.width
    return ResNet(spec.in_shape[0], w, (w, 2 * w, 4 * w, 8 * w), spec.depth, False, dropout, spectral_norm)


@architecture("wrn-28-10", width=160, depth=4)
def build_wide_resnet(spec: BackboneSpec, *, dropout: float = 0.0, spectral_norm: float | None = None) -> nn.Module:
    w = spec.width
    return ResNet(spec.in_shape[0], 16, (w, 2 * w, 4 * w), spec.depth, True, dropout, spectral_norm)

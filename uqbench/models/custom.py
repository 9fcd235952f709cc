"""Backbones of your own: a factory `(dropout: float, spectral_norm: float | None) -> nn.Module` registered as an
architecture, so every method builds its variant from it.

The module the factory returns maps inputs [B, *in_shape] to features [B, H] and has an integer attribute
`out_features` (H). `dropout` is the probability of the dropout layers MC dropout needs (0: none); `spectral_norm`
the bound of the spectral normalisation SNGP needs (None: none). A method whose variant the module does not honour
(no `nn.Dropout` of that probability, no spectral normalisation) refuses with an `Unsupported` error instead of
silently becoming MAP. The factory's code is in every run key (`code.backbone`: the hash of its source, or the
`version` given), and in the key of the cached networks, so a changed factory never reuses a network.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import re
from typing import Callable

from torch import nn

from uqbench.errors import BadConfig, Unsupported
from uqbench.models import ARCHITECTURES, DEFAULT_SIZES, BackboneSpec, _register_builtins

Factory = Callable[..., nn.Module]  # (dropout: float, spectral_norm: float | None) -> nn.Module
CUSTOM: dict[str, str] = {}  # architecture name -> "custom:<fingerprint>", the code that builds it


def register_backbone(name: str, factory: Factory, *, version: str | None = None) -> str:
    """Register `factory` as the architecture `name` (settings then choose it: `arch=NAME`); returns the name.

    Args:
        version: what identifies the factory's code in run keys; default: a hash of the factory's code, of the
            methods of the class of the module it builds and of that module's layers (give a version when what
            changes is out of the hash's sight, say a function the network's forward calls).

    Raises:
        BadConfig: a name that is not kebab-case or is a built-in architecture's, a factory that is not callable.
    """
    _register_builtins()
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name):
        raise BadConfig(f"register_backbone: name must be kebab-case, e.g. 'my-net'; got {name!r}")
    if name in ARCHITECTURES and name not in CUSTOM:
        raise BadConfig(f"register_backbone: {name!r} is a built-in architecture; choose another name")
    if not callable(factory):
        raise BadConfig(f"register_backbone: the factory must be callable; got {factory!r}")
    fingerprint = version if version is not None else _source_hash(factory, name)

    def build(spec: BackboneSpec, *, dropout: float = 0.0, spectral_norm: float | None = None) -> nn.Module:
        module = factory(dropout=dropout, spectral_norm=spectral_norm)
        check_variant(module, name, dropout, spectral_norm)
        return module

    ARCHITECTURES[name], DEFAULT_SIZES[name] = build, (1, 1)
    CUSTOM[name] = f"custom:{fingerprint}"
    return name


def check_variant(module: object, name: str, dropout: float, spectral_norm: float | None) -> None:
    """Unsupported unless `module` is a backbone with `out_features` that has the asked dropout and normalisation."""
    if not isinstance(module, nn.Module):
        raise BadConfig(f"backbone {name!r}: the factory returned {type(module).__name__}, not an nn.Module")
    features = getattr(module, "out_features", None)
    if not isinstance(features, int) or isinstance(features, bool) or features < 1:
        raise BadConfig(f"backbone {name!r}: the module needs an integer attribute out_features (its feature width)")
    if dropout > 0 and not any(isinstance(m, nn.modules.dropout._DropoutNd) and math.isclose(m.p, dropout)
                               for m in module.modules()):
        raise Unsupported(f"backbone {name!r}: this method needs dropout layers of p={dropout:g}, and the factory "
                          "built none (honour its `dropout` argument)")
    if spectral_norm is not None and not any(_normalised(m) for m in module.modules()):
        raise Unsupported(f"backbone {name!r}: this method needs spectral normalisation (bound {spectral_norm:g}), "
                          "and the factory built none (honour its `spectral_norm` argument, e.g. with "
                          "torch.nn.utils.parametrizations.spectral_norm)")


def _normalised(module: nn.Module) -> bool:
    """A layer under spectral normalisation: torch's parametrisation or hook, or uqbench's soft one."""
    return bool(getattr(module, "parametrizations", None)) or hasattr(module, "weight_orig")


def _source_hash(factory: Factory, name: str) -> str:
    """sha256 of the factory's code, the code of the class of the module it builds, and that module's layers
    (printed): what a change of the factory, of its network's code or of its architecture changes. The code is the
    source where Python can read it, else the compiled code (a factory typed at a prompt, or exec'd)."""
    module = factory(dropout=0.0, spectral_norm=None)
    parts = [_code(factory, name), *(_code(f, name) for f in vars(type(module)).values() if inspect.isfunction(f)),
             repr(module)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _code(fn: Callable, name: str) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        if code is None:
            raise BadConfig(f"register_backbone: the code of {name!r}'s factory cannot be read; give version=") from None
        return code.co_code.hex() + repr(code.co_consts) + repr(code.co_names)


__all__ = ["CUSTOM", "Factory", "check_variant", "register_backbone"]

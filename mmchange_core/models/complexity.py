"""Parameter and FLOP counts (the text encoder excluded), overall and per module.

FLOPs are counted with ``torch.utils.flop_counter`` (2 FLOPs per multiply-accumulate of convs and
matrix products) for one image pair.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

from mmchange_core.models.mmchange import MMChange

#: Reported groups: (row label, module path inside MMChange).
MODULE_GROUPS = (
    ("encoder: trunk", "encoder.trunk"),
    ("encoder: projections", "encoder.proj"),
    ("encoder: aggregation (NAM)", "encoder.aggregation"),
    ("IFR", "ifr"),
    ("TDE", "tde"),
    ("ITFF", "itff"),
    ("decoder", "decoder"),
)


@dataclass
class ModuleCost:
    """Parameters and GFLOPs of one module group."""

    name: str
    params: int
    gflops: float


@dataclass
class Complexity:
    """Size and cost of a network for one pair at ``size`` x ``size``."""

    backbone: str
    variant: str
    size: int
    params: int
    gflops: float
    modules: list[ModuleCost] = field(default_factory=list)

    @property
    def params_m(self) -> float:
        """Parameters in millions."""
        return self.params / 1e6


def count_parameters(module: torch.nn.Module) -> int:
    """Number of parameters (each shared tensor counted once)."""
    return sum(p.numel() for p in module.parameters())


def _submodule(model: torch.nn.Module, path: str) -> torch.nn.Module | None:
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def _flops_under(by_module: dict[str, dict], prefix: str) -> float:
    """FLOPs of the module at ``prefix``: its own entry, or its topmost called descendants."""
    if prefix in by_module:
        return float(sum(by_module[prefix].values()))
    keys = [k for k in by_module if k.startswith(prefix + ".")]
    top = [k for k in keys if not any(k != o and k.startswith(o + ".") for o in keys)]
    return float(sum(sum(by_module[k].values()) for k in top))


def measure_complexity(model: MMChange, size: int = 256) -> Complexity:
    """Count parameters and FLOPs of ``model`` for one pair of ``size`` x ``size`` images."""
    model = model.eval()
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    img = torch.zeros(1, 3, size, size, device=device, dtype=dtype)
    text = torch.zeros(1, model.config.text_dim, device=device, dtype=dtype) if model.uses_text else None
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(img, img, text, text)
    by_module = counter.get_flop_counts()
    root = type(model).__name__
    rows = []
    for label, path in MODULE_GROUPS:
        sub = _submodule(model, path)
        if sub is None:
            continue
        flops = _flops_under(by_module, f"{root}.{path}")
        rows.append(ModuleCost(label, count_parameters(sub), flops / 1e9))
    return Complexity(
        backbone=model.config.backbone,
        variant=model.config.variant,
        size=size,
        params=count_parameters(model),
        gflops=counter.get_total_flops() / 1e9,
        modules=rows,
    )


def describe_model(backbone: str = "resnet50", variant: str = "full", size: int = 256,
                   text_dim: int = 512) -> Complexity:
    """Build ``backbone``/``variant`` with random weights and measure it at ``size`` x ``size``."""
    from mmchange_core.config import SIZE, check_value
    from mmchange_core.errors import MMChangeError
    from mmchange_core.models.config import ModelConfig

    check_value("size", size, SIZE)
    try:
        config = ModelConfig(backbone=backbone, variant=variant, text_dim=text_dim)
    except ValueError as exc:
        raise MMChangeError(str(exc)) from exc
    return measure_complexity(MMChange(config), size)

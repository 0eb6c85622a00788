"""Which parameters the outer loop trains (``--train-body``), and parameter counts."""
from __future__ import annotations

from torch import nn

TRAIN_BODY = ("all", "bn", "none")


def batch_norm_parameters(model: nn.Module) -> list[str]:
    """Names of the affine parameters of every BatchNorm layer of ``model``."""
    return [f"{m_name}.{p_name}" if m_name else p_name
            for m_name, module in model.named_modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)
            for p_name, _ in module.named_parameters(recurse=False)]


def set_meta_trained(model: nn.Module, train_body: str) -> None:
    """Freeze the body parameters that the outer loop leaves as they are.

    ``all``: every parameter is meta-trained; ``bn``: of the body, only the BatchNorm affine
    parameters (convolutions frozen); ``none``: the head only. Frozen tensors get
    ``requires_grad=False``, so no optimizer sees them and they stay bit for bit as loaded.
    """
    if train_body not in TRAIN_BODY:
        raise ValueError(f"unknown train_body {train_body!r}: choose one of {', '.join(TRAIN_BODY)}")
    bn = set(batch_norm_parameters(model))
    for name, p in model.named_parameters():
        body = name.startswith("body.")
        p.requires_grad_(not body or train_body == "all" or (train_body == "bn" and name in bn))


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Total, meta-trained (``requires_grad``) and BatchNorm parameter counts."""
    params = dict(model.named_parameters())
    return {"total": sum(p.numel() for p in params.values()),
            "meta_trained": sum(p.numel() for p in params.values() if p.requires_grad),
            "batchnorm": sum(params[n].numel() for n in batch_norm_parameters(model))}

"""Hugging Face causal LMs: loading one and choosing the torch device, in one place for every stage."""

from __future__ import annotations

from pathlib import Path

import torch

from featstore.errors import FeatstoreError


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """`cuda` when available unless the caller names a device; a named CUDA device must exist."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise FeatstoreError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise FeatstoreError(f"device {device!r} asked for but CUDA is not available; use --device cpu")
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise FeatstoreError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s); use cuda:0..")
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise FeatstoreError(f"device {device!r} is not supported; use cpu, cuda or cuda:N")
    return resolved


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """An HF causal LM (folder or hub id) in eval mode on `device`."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise FeatstoreError(f"cannot load model {str(path)!r}: {str(exc).splitlines()[0]}") from exc
    return model.to(resolve_device(device)).eval()

"""The model families; ``build_model`` picks one by name."""

from __future__ import annotations

from training.models.aae import AAE
from training.models.ae import AE
from training.models.base import Architecture, Autoencoder, Batch
from training.models.ensemble import Ensemble
from training.models.hvae import HVAE
from training.models.vae import VAE
from training.models.vaegan import VAEGAN

__all__ = ["AAE", "AE", "HVAE", "VAE", "VAEGAN", "Architecture", "Autoencoder", "Batch", "Ensemble", "build_model"]


def build_model(model_type: str, arch: Architecture, *, denoise: float = 0.0, free_bits: float = 0.0) -> Autoencoder:
    if model_type == "vae":
        return VAE(arch, free_bits=free_bits)
    if model_type == "aae":
        return AAE(arch)
    if model_type == "ae":
        return AE(arch, noise=denoise)
    if model_type == "vaegan":
        return VAEGAN(arch, free_bits=free_bits)
    if model_type == "hvae":
        return HVAE(arch)
    msg = f"unknown model type {model_type!r}"
    raise ValueError(msg)

"""Toy models with known ground truth (superposition)."""

from .superposition import (
                            ToyConfig,
                            ToyModel,
                            hidden_activations,
                            plot_geometry,
                            recovery,
                            sample_features,
                            train_toy_model,
)

__all__ = ["ToyConfig", "ToyModel", "hidden_activations", "plot_geometry", "recovery", "sample_features",
           "train_toy_model"]

"""Teacher features at the analysed layer L: the distilled student's regression target.

SPEC section 1: the student is trained only to mimic the teacher's feature at L (MSE). With no
augmentation every epoch sees the same inputs, so the teacher's tap output is computed once per
training image, before training (the pipeline's ``distilled_student`` job does this); with
augmentation the trainer computes it online on the same augmented batch instead.

Example:
    >>> from kdconcepts.models import build_model, resolve_layer
    >>> model = build_model("small_vgg", num_classes=4, image_size=32)
    >>> feats = extract_features(model, resolve_layer("small_vgg", "fc1"), torch.zeros(3, 3, 32, 32))
    >>> tuple(feats.shape)
    (3, 256)
"""

from __future__ import annotations


import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor
from tqdm.auto import tqdm

__all__ = ["tap", "extract_features"]


class _Tap(nn.Module):
    """Wraps a feature-extractor graph so that calling it returns the one tapped tensor."""

    def __init__(self, graph: nn.Module):
        super().__init__()
        self.graph = graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x)["out"]


def tap(model: nn.Module, layer_node: str) -> nn.Module:
    """A module computing only ``model`` up to ``layer_node`` and returning that node's output.

    It shares the parameters (and BatchNorm buffers) of ``model``: gradients and running-stat
    updates reach the original network, and the leaf modules' train/eval mode is the model's.
    (The nets of the registry trace to the same graph in train and eval mode.)
    """
    return _Tap(create_feature_extractor(model, return_nodes={layer_node: "out"}))


@torch.no_grad()
def extract_features(
    model: nn.Module,
    layer_node: str,
    images: torch.Tensor,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> torch.Tensor:
    """The (pre-ReLU) output of ``layer_node`` for every image, in eval mode.

    Args:
        model: the network (its mode is restored afterwards).
        layer_node: a node name, e.g. from :func:`kdconcepts.models.resolve_layer`.
        images: float tensor [N, 3, S, S], normalised as the network was trained.
        batch_size: images per forward pass (bounds memory).
        device: where to run the forward passes; the result is on the CPU, float32.
        progress: show a progress bar on stderr.

    Returns:
        Tensor [N, *tap_shape] in the order of ``images``.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [N, 3, S, S], got {tuple(images.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    try:
        module = tap(model, layer_node).to(device)
        chunks = []
        for start in tqdm(range(0, len(images), batch_size), desc=f"features {layer_node}",
                          disable=not progress, leave=False):
            batch = images[start:start + batch_size].to(device)
            chunks.append(module(batch).float().cpu())
    finally:
        model.train(was_training)
    if not chunks:
        raise ValueError("no images given")
    return torch.cat(chunks)

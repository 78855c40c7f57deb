"""The network up to the analysed layer, as the sigma engine runs it (:mod:`kdconcepts.quantify.engine`).

``truncated_model`` cuts a model at a node (torchvision's FX feature extractor), freezes it,
folds eval-mode BatchNorm into the convolution before it and runs ReLUs in place where that is
provably harmless; ``_Engine`` feeds it (image, noise sample) rows in chunks sized so that the
activations stay near the cache on a CPU, in channels_last, under the asked precision.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

class _TruncatedModel(nn.Module):
    """The model up to the analysed node; returns that node's (pre-ReLU) output."""

    def __init__(self, extractor: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.extractor(x)["feature"]


# Layers whose backward does not need their output, so a ReLU may overwrite it in place.
_RELU_INPLACE_AFTER = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm1d,
                       nn.BatchNorm2d, nn.BatchNorm3d, nn.MaxPool1d, nn.MaxPool2d,
                       nn.MaxPool3d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)


def _relu_in_place(graph_module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Rewrites ReLUs to run in place where that cannot change any value.

    Only where the ReLU is the sole user of the output of a layer in
    ``_RELU_INPLACE_AFTER`` (the saved tensors of their backward are not that output);
    the node is replaced, not the module, so a ReLU module used twice stays as it is.
    Saves an allocation and a memory pass per activation (about 20% on CPU).
    """
    graph = graph_module.graph
    modules = dict(graph_module.named_modules())
    for node in list(graph.nodes):
        is_relu = (node.op == "call_module" and type(modules.get(node.target)) is nn.ReLU) \
            or (node.op == "call_function" and node.target in (torch.relu, F.relu)
                and not node.kwargs)
        if not is_relu or len(node.args) != 1:
            continue
        source = node.args[0]
        if not (isinstance(source, torch.fx.Node) and source.op == "call_module"
                and isinstance(modules.get(source.target), _RELU_INPLACE_AFTER)
                and len(source.users) == 1):
            continue
        with graph.inserting_after(node):
            replacement = graph.call_function(torch.relu_, (source,))
        node.replace_all_uses_with(replacement)
        graph.erase_node(node)
    graph.lint()
    graph_module.recompile()
    return graph_module


def truncated_model(model: nn.Module, layer: str, fold_batchnorm: bool = True,
                    relu_in_place: bool = True) -> nn.Module:
    """A frozen eval-mode copy of ``model`` that stops at node ``layer``.

    Args:
        model: any ``torch.fx``-traceable module (torchvision models are).
        layer: a node name as listed by
            ``torchvision.models.feature_extraction.get_graph_node_names`` (eval mode).
        fold_batchnorm: fold eval-mode BatchNorm into the preceding conv / linear layer
            (same function up to float rounding; saves two memory-bound passes a layer).
        relu_in_place: run ReLUs in place where provably harmless (same values).

    Raises:
        ValueError: if ``layer`` is not a node of the model.
    """
    from torchvision.models.feature_extraction import (create_feature_extractor,
                                                       get_graph_node_names)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    was_training = model.training
    try:
        extractor = create_feature_extractor(model.eval(), return_nodes={layer: "feature"})
    except ValueError as error:
        _, eval_nodes = get_graph_node_names(model)
        raise ValueError(f"layer {layer!r} is not a node of {type(model).__name__}; "
                         f"nodes: {eval_nodes}") from error
    finally:
        model.train(was_training)
    # A copy, so moving it to a device or freezing it leaves the caller's model alone.
    # A plain GraphModule of the eval graph (the feature extractor holds two graphs).
    extractor = copy.deepcopy(extractor).eval()
    extractor = torch.fx.GraphModule(extractor, copy.deepcopy(extractor.graph)).eval()
    if fold_batchnorm:
        from torch.fx.experimental.optimization import fuse
        extractor = fuse(extractor, inplace=True, no_trace=True)
    if relu_in_place:
        extractor = _relu_in_place(extractor)
    truncated = _TruncatedModel(extractor).eval()
    truncated.requires_grad_(False)
    return truncated


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _row_chunks(image_indices: Sequence[int], samples: int, max_rows: int,
                per_image: bool = False) -> Iterator[list[tuple[int, int, int]]]:
    """Splits the rows (image, sample) into chunks of at most ``max_rows`` rows.

    With ``per_image``, a chunk never holds rows of two images, so every forward an image
    takes part in has the same rows whatever else is quantified: its result is bit-identical
    in any batch (kernels may round differently for another batch size).

    Yields lists of segments ``(image index, first sample, end sample)``.
    """
    if per_image:
        for b in image_indices:
            for start in range(0, samples, max_rows):
                yield [(b, start, min(start + max_rows, samples))]
        return
    chunk: list[tuple[int, int, int]] = []
    room = max_rows
    for b in image_indices:
        start = 0
        while start < samples:
            take = min(room, samples - start)
            chunk.append((b, start, start + take))
            start += take
            room -= take
            if room == 0:
                yield chunk
                chunk, room = [], max_rows
    if chunk:
        yield chunk


class _ActivationProbe(torch.fx.Interpreter):
    """Runs the graph once and records the largest tensor any node produces."""

    largest = 0

    def run_node(self, node):
        out = super().run_node(node)
        if isinstance(out, torch.Tensor):
            self.largest = max(self.largest, out.numel() * out.element_size())
        return out


def largest_activation_bytes(truncated: nn.Module, sample: torch.Tensor) -> int:
    """Bytes of the largest intermediate tensor of the truncated model for ``sample``."""
    probe = _ActivationProbe(truncated.extractor)
    with torch.no_grad():
        probe.run(sample)
    return max(probe.largest, 1)


class _Engine:
    """Holds the truncated model and the per-run options; see :func:`estimate_sigma`."""

    def __init__(self, truncated: nn.Module, device: torch.device, precision: str,
                 channels_last: bool, max_batch: int, per_image: bool = False) -> None:
        self.per_image = per_image
        self.model = truncated.to(device)
        self.device = device
        self.precision = precision
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.max_batch = max_batch

    def fit_chunk(self, sample: torch.Tensor, chunk_bytes: int | None, min_rows: int) -> None:
        """Lowers ``max_batch`` so one chunk's largest activation is <= chunk_bytes.

        Never below ``min_rows`` (one image's K samples, the authors' batch): deep nets
        with small feature maps need batches that large to run efficiently (VGG-16 at
        32 px on the dev CPU: 64-row chunks 1.3 s CPU per image-step, 192-row 0.94 s).
        """
        if chunk_bytes is None:
            return
        per_row = largest_activation_bytes(self.model, sample[:1])
        self.max_batch = max(1, min(self.max_batch, max(min_rows, chunk_bytes // per_row)))

    def chunks(self, image_indices: Sequence[int], samples: int):
        return _row_chunks(image_indices, samples, self.max_batch, self.per_image)

    def clean_features(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) of every image: one image per forward in per-image mode, else batched."""
        step = 1 if self.per_image else self.max_batch
        return torch.cat([self.features(x[i:i + step]) for i in range(0, x.shape[0], step)])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) = ReLU(layer output), flattened to [R, D], float32."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(self.device, self.precision):
            out = self.model(x)
        return F.relu(out.float()).flatten(1)



"""Teacher features at the analysed layer (the student's cached targets)."""

import pytest
import torch

from kdconcepts.features import extract_features, tap
from kdconcepts.models import build_model, resolve_layer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = build_model("small_vgg", num_classes=5, image_size=16)
    # Non-trivial BatchNorm statistics, so train and eval modes differ.
    net.train()
    with torch.no_grad():
        net(torch.randn(32, 3, 16, 16) * 2 + 1)
    return net


def hooked_output(net, module_name, images):
    captured = {}
    module = dict(net.named_modules())[module_name]
    handle = module.register_forward_hook(lambda m, i, o: captured.setdefault("out", o.detach().clone()))
    try:
        net.eval()
        with torch.no_grad():
            net(images)
    finally:
        handle.remove()
    return captured["out"]


@pytest.mark.parametrize("layer", ["conv", "fc1", "fc2"])
def test_features_equal_the_eval_mode_tap_output(model, layer):
    images = torch.randn(7, 3, 16, 16)
    node = resolve_layer("small_vgg", layer)
    model.train()
    features = extract_features(model, node, images, batch_size=3)
    assert model.training  # mode restored
    expected = hooked_output(model, node, images)
    assert features.dtype == torch.float32 and features.shape == expected.shape
    assert torch.allclose(features, expected, atol=1e-6)
    assert (features < 0).any()  # pre-ReLU


def test_batch_size_does_not_change_the_features(model):
    images = torch.randn(9, 3, 16, 16)
    node = resolve_layer("small_vgg", "conv")
    assert torch.allclose(extract_features(model, node, images, batch_size=2),
                          extract_features(model, node, images, batch_size=9), atol=1e-6)


def test_tap_shares_parameters_with_the_model(model):
    node = resolve_layer("small_vgg", "fc1")
    module = tap(model, node)
    ids = {id(p) for p in model.parameters()}
    assert all(id(p) in ids for p in module.parameters())
    loss = module(torch.randn(2, 3, 16, 16)).sum()
    model.zero_grad()
    loss.backward()
    assert model.classifier[0].weight.grad is not None and model.features[0].weight.grad is not None
    assert model.classifier[3].weight.grad is None  # above the tap: not computed


def test_bad_input_is_refused(model):
    node = resolve_layer("small_vgg", "conv")
    with pytest.raises(ValueError, match=r"\[N, 3, S, S\]"):
        extract_features(model, node, torch.randn(3, 16, 16))
    with pytest.raises(ValueError, match="batch_size"):
        extract_features(model, node, torch.randn(1, 3, 16, 16), batch_size=0)
    with pytest.raises(ValueError, match="no images"):
        extract_features(model, node, torch.randn(0, 3, 16, 16))

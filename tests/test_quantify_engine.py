"""Tests of the sigma-estimation engine against the method (SPEC section 2) and the authors'
per-image loop structure."""

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from kdconcepts.quantify import SigmaConfig, estimate_sigma
from kdconcepts.quantify.engine import estimate_sigma_f, noise_generator, settled_last_step

torch.set_num_threads(1)

SIZE = 16
# A small setting (paper's lr, lambda, H*): with an 8 x 8 grid the mean entropy
# reaches H* = -2.8 just after the decision step, so the default target is boosted.
CFG = SigmaConfig(grid=8, steps=14, boost_after=9, samples=6, lr=1e-4, lam=7.0,
                  target_entropy=-2.8)


class TinyNet(nn.Module):
    """Conv net with a classifier head; "features.3" is the last conv (pre-ReLU)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Conv2d(8, 12, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(12 * (SIZE // 2) ** 2, 5)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


class TinyBNNet(TinyNet):
    """TinyNet with eval-mode BatchNorm (which the engine folds into the conv)."""

    def __init__(self) -> None:
        super().__init__(seed=2)
        self.features[1] = nn.BatchNorm2d(8)
        self.features[1].running_mean.uniform_(-0.2, 0.2)
        self.features[1].running_var.uniform_(0.5, 2.0)
        self.features[1].weight.data.uniform_(0.5, 1.5)
        self.eval()


class LeftHalfNet(nn.Module):
    """Reads only the left half of the image."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 16, 3, padding=1)

    def forward(self, x):
        return self.conv(x[:, :, :, : SIZE // 2])


class ConstantNet(nn.Module):
    """Ignores its input: the feature is the bias."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.constant_(self.conv.bias, 0.5)

    def forward(self, x):
        return self.conv(x)


def images(n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((n, 3, SIZE, SIZE), generator=generator)


def reference_sigma(model, layer, image, cfg, generator):
    """The authors' per-image loop (sigma/train_sigma.py structure), same noise stream.

    Full model parameters keep requires_grad (as in their code), sigma is an nn.Parameter
    clamped in place before each forward, plain SGD, an entropy record that stays 0 after
    a stop, and np.argmin over it.
    """
    extractor = create_feature_extractor(model.eval(), return_nodes={layer: "f"})

    def feature(z):
        return F.relu(extractor(z)["f"])

    class NoiseLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.sigma = nn.Parameter(torch.full((1, 1, cfg.grid, cfg.grid), cfg.sigma_init))

        def forward(self, inp, unit_noise):
            self.sigma.data.clamp_(cfg.sigma_min, cfg.sigma_max)
            up = F.interpolate(self.sigma.expand(unit_noise.shape[0], 1, cfg.grid, cfg.grid),
                               size=inp.shape[-2:], mode="nearest")
            penalty = torch.mean(torch.log(self.sigma)) \
                + 0.5 * torch.log(torch.tensor(2 * math.pi)) + torch.tensor(0.5)
            return inp + up * unit_noise, penalty

    image = image[None]
    shape = (cfg.samples, *image.shape[1:])
    with torch.no_grad():
        noisy, _ = NoiseLayer()(image, torch.randn(shape, generator=generator))
        noise_feature = feature(noisy)
        origin = feature(image).expand(noise_feature.size())
        sigma_f = F.mse_loss(noise_feature, origin)
        if sigma_f.item() == 0:
            return None
    layer_ = NoiseLayer()
    optimizer = torch.optim.SGD(layer_.parameters(), lr=cfg.lr)
    lam = cfg.lam
    entropy = np.zeros(cfg.steps)
    snapshots = []
    for epoch in range(cfg.steps):
        noisy, penalty = layer_(image, torch.randn(shape, generator=generator))
        # clone: on a CPU, .numpy() of the parameter would alias it (on GPU .cpu() copies)
        snapshots.append(layer_.sigma.detach().clone().numpy())
        loss = F.mse_loss(feature(noisy), origin) / sigma_f - penalty * lam
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        entropy[epoch] = penalty.item()
        if epoch == cfg.boost_after - 1:
            if np.max(entropy[: cfg.boost_after]) > cfg.target_entropy:
                break
            lam = lam * cfg.boost_factor
    best = int(np.argmin(np.abs(entropy - cfg.target_entropy)))
    return {"sigma": torch.from_numpy(snapshots[best][0, 0]), "step": best,
            "sigma_f": sigma_f.item(), "entropy": entropy, "runs": len(snapshots)}


@pytest.mark.parametrize("target, net", [(-2.8, TinyNet), (-3.0, TinyNet), (0.0, TinyNet),
                                         (-2.8, TinyBNNet)])
def test_matches_the_authors_per_image_loop(target, net):
    # -2.8 is crossed after the boost; -3.0 is crossed early, so the image stops at the
    # decision step; 0.0 is never reached: boosted, and the last snapshot is selected.
    cfg = SigmaConfig(**{**CFG.__dict__, "target_entropy": target})
    model, x, keys = net(), images(3), ["a", "b", "c"]
    res = estimate_sigma(model, "features.3", x, cfg, seed=5, image_keys=keys,
                         max_batch=8)
    for b, key in enumerate(keys):
        ref = reference_sigma(model, "features.3", x[b], cfg, noise_generator(5, key))
        assert res.usable[b]
        assert res.sigma_f[b] == pytest.approx(ref["sigma_f"], rel=1e-5)
        assert int(res.step[b]) == ref["step"]
        torch.testing.assert_close(res.sigma[b], ref["sigma"], rtol=2e-5, atol=1e-7)
        recorded = ref["runs"]
        np.testing.assert_allclose(res.trace[b, :recorded].numpy(),
                                   ref["entropy"][:recorded], rtol=0, atol=2e-6)
        assert torch.isnan(res.trace[b, recorded:]).all()
        # The update after the last recorded snapshot is skipped: one pass fewer.
        assert int(res.passes[b]) == recorded - 1
        boosted = recorded == cfg.steps
        assert bool(res.boosted[b]) == boosted
        assert boosted == (target > -3.0)


def test_boost_happens_exactly_when_the_target_was_never_exceeded():
    model, x = TinyNet(), images(1)
    free = estimate_sigma(model, "features.3", x, SigmaConfig(
        **{**CFG.__dict__, "target_entropy": 1.0}), seed=1)
    assert bool(free.boosted[0])
    peak = float(free.trace[0, : CFG.boost_after].max())
    # Target equal to the running maximum: "max <= H*" holds, so lambda is boosted.
    at = estimate_sigma(model, "features.3", x, SigmaConfig(
        **{**CFG.__dict__, "target_entropy": peak}), seed=1)
    assert bool(at.boosted[0]) and int(at.passes[0]) == CFG.steps - 1
    # Just below it: the target was exceeded, the image stops at step boost_after - 1.
    below = estimate_sigma(model, "features.3", x, SigmaConfig(
        **{**CFG.__dict__, "target_entropy": peak - 1e-6}), seed=1)
    assert not bool(below.boosted[0]) and int(below.passes[0]) == CFG.boost_after - 1
    assert torch.isnan(below.trace[0, CFG.boost_after:]).all()
    assert not torch.isnan(below.trace[0, : CFG.boost_after]).any()
    # lambda x 1.5 takes effect from the update after the decision step: the traces
    # with and without the boost agree up to step boost_after, then differ.
    unboosted = estimate_sigma(model, "features.3", x, SigmaConfig(
        **{**CFG.__dict__, "target_entropy": 1.0, "boost_factor": 1.0}), seed=1)
    k = CFG.boost_after
    torch.testing.assert_close(free.trace[0, : k + 1], unboosted.trace[0, : k + 1])
    assert (free.trace[0, k + 1:] > unboosted.trace[0, k + 1:]).all()


def test_selection_is_the_snapshot_nearest_the_target():
    res = estimate_sigma(TinyNet(), "features.3", images(3), CFG, seed=2)
    for b in range(3):
        trace = res.trace[b]
        distance = (trace - CFG.target_entropy).abs()
        distance[torch.isnan(distance)] = math.inf
        assert int(res.step[b]) == int(np.argmin(distance.numpy()))
        selected_mean = float(res.entropy[b].double().mean())
        assert selected_mean == pytest.approx(float(trace[res.step[b]]), abs=1e-5)
        assert float(res.mean_entropy[b]) == float(trace[res.step[b]])
    torch.testing.assert_close(res.entropy, torch.log(res.sigma) + CFG.entropy_offset)


def test_left_half_model_gives_clamped_entropy_on_the_right_half():
    # sigma_max = 0.05 so that the entropy push alone reaches the clamp within 40 steps;
    # H* = the entropy of the clamp itself is never reached (the left half stays below it),
    # so the nearest snapshot is kept, and flagged as not at the target.
    cfg = SigmaConfig(grid=4, steps=40, boost_after=30, samples=6, sigma_max=0.05,
                      target_entropy=math.log(0.05) + SigmaConfig().entropy_offset)
    res = estimate_sigma(LeftHalfNet(), "conv", images(2), cfg, seed=0)
    assert res.usable.all()
    right = res.entropy[:, :, 2:]
    left = res.entropy[:, :, :2]
    at_clamp = math.log(cfg.sigma_max) + cfg.entropy_offset
    # Nothing on the right reaches the feature: sigma is pushed to the sigma_max clamp.
    torch.testing.assert_close(right, torch.full_like(right, at_clamp))
    assert (left < at_clamp - 0.5).all()
    assert not res.target_reached.any()


def test_model_ignoring_the_input_is_not_usable():
    x = images(2)
    res = estimate_sigma(ConstantNet(), "conv", x, CFG, seed=0)
    assert (res.sigma_f == 0).all() and not res.usable.any()
    assert (res.step == -1).all() and torch.isnan(res.sigma).all()
    assert (res.passes == 0).all() and torch.isnan(res.trace).all()


def test_batch_equals_single_image_runs_and_chunking_does_not_matter():
    model, x, keys = TinyNet(), images(3, seed=3), ["p", "q", "r"]
    batch = estimate_sigma(model, "features.3", x, CFG, seed=7, image_keys=keys)
    chunked = estimate_sigma(model, "features.3", x, CFG, seed=7, image_keys=keys,
                             max_batch=5)  # 5 does not divide K = 6: images share chunks
    for b, key in enumerate(keys):
        single = estimate_sigma(model, "features.3", x[b:b + 1], CFG, seed=7,
                                image_keys=[key])
        for other in (single, chunked):
            assert int(other.step[0 if other is single else b]) == int(batch.step[b])
        torch.testing.assert_close(single.sigma[0], batch.sigma[b], rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(chunked.sigma[b], batch.sigma[b], rtol=1e-5, atol=1e-8)
    # Batch composition and order do not matter either: key "q" alone with others.
    shuffled = estimate_sigma(model, "features.3", x[[1, 0]], CFG, seed=7,
                              image_keys=["q", "p"])
    torch.testing.assert_close(shuffled.sigma[0], batch.sigma[1], rtol=1e-5, atol=1e-8)


def test_deterministic_for_a_fixed_seed_and_seed_matters():
    model, x = TinyNet(), images(2)
    first = estimate_sigma(model, "features.3", x, CFG, seed=3)
    again = estimate_sigma(model, "features.3", x, CFG, seed=3)
    other = estimate_sigma(model, "features.3", x, CFG, seed=4)
    assert torch.equal(first.sigma, again.sigma) and torch.equal(first.trace, again.trace)
    assert not torch.equal(first.sigma, other.sigma)


def test_callers_model_is_left_untouched():
    model = TinyNet().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    estimate_sigma(model, "features.3", images(1), CFG, seed=0)
    assert model.training
    assert all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_bf16_autocast_stays_close_to_fp32():
    model, x = TinyNet(), images(3)
    fp32 = estimate_sigma(model, "features.3", x, CFG, seed=0)
    bf16 = estimate_sigma(model, "features.3", x, CFG, seed=0, precision="bf16")
    # Stated tolerance: entropy maps within 0.05 nats mean absolute difference, per image.
    assert ((bf16.entropy - fp32.entropy).abs().mean(dim=(1, 2)) < 0.05).all()
    assert torch.allclose(bf16.sigma_f, fp32.sigma_f, rtol=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_stays_close_to_cpu_fp32(precision):
    model, x = TinyNet(), images(3)
    cpu = estimate_sigma(model, "features.3", x, CFG, seed=0, device="cpu")
    # The CUDA noise stream differs from the CPU one, so compare statistics, not values.
    gpu = estimate_sigma(model, "features.3", x, CFG, seed=0, device="cuda",
                         precision=precision)
    assert gpu.usable.all()
    assert ((gpu.entropy.mean(dim=(1, 2)) - cpu.entropy.mean(dim=(1, 2))).abs() < 0.1).all()


def test_bad_inputs_give_clear_errors():
    model = TinyNet()
    with pytest.raises(ValueError, match="not divisible"):
        estimate_sigma(model, "features.3", torch.rand(1, 3, 15, 15), CFG)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        estimate_sigma(model, "features.3", torch.rand(3, 16, 16), CFG)
    with pytest.raises(ValueError, match="not a node"):
        estimate_sigma(model, "features.99", images(1), CFG)
    with pytest.raises(ValueError, match="precision"):
        estimate_sigma(model, "features.3", images(1), CFG, precision="int8")
    with pytest.raises(ValueError, match="image_keys"):
        estimate_sigma(model, "features.3", images(2), CFG, image_keys=["a", "a"])
    with pytest.raises(ValueError, match="boost_after"):
        SigmaConfig(steps=10, boost_after=11)


def test_config_from_mapping_reads_the_quantify_section():
    section = {"grid": 16, "steps": 80, "boost_after": 60, "samples": 96, "lr": 1.0e-4,
               "lam": 7, "boost_factor": 1.5, "target_entropy": -2.8, "sigma_init": 0.01,
               "sigma_min": 1.0e-3, "sigma_max": 1.0, "candidates": 24, "max_batch": 1536,
               "precision": "fp32"}
    cfg = SigmaConfig.from_mapping(section)
    assert cfg == SigmaConfig()
    assert isinstance(cfg.lam, float) and cfg.lr == 1e-4
    with pytest.raises(ValueError, match="unknown"):
        SigmaConfig.from_mapping({"gird": 16})
    # Text is not a number, here as in the pipeline's schema (YAML reads 1e-4 as text).
    with pytest.raises(ValueError, match="lr = '1e-4'"):
        SigmaConfig.from_mapping({"lr": "1e-4"})


@pytest.mark.parametrize("bad, words", [
    ({"lam": -1.0}, "lam = -1.0"),
    ({"boost_factor": 0.5}, "boost_factor = 0.5"),
    ({"steps": 1}, "steps = 1"),
    ({"sigma_init": 2.0}, "sigma_init (2.0) must lie in"),
    ({"target_entropy": 3.0}, "target_entropy (3.0) cannot be reached"),
    ({"lr": float("inf")}, "lr = inf"),
    ({"grid": True}, "grid = True"),
    ({"stop": "early"}, "stop = 'early'"),
])
def test_sigma_config_refuses_what_the_pipeline_refuses(bad, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        SigmaConfig(**bad)
    assert any(words in p for p in SigmaConfig.problems(bad))


class SkipNet(nn.Module):
    """A conv output used twice (ReLU and a skip connection) and a ReLU module reused."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4).eval()
        self.bn.running_mean.uniform_(-0.5, 0.5)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        a = self.bn(self.conv1(x))
        return self.relu(self.conv2(self.relu(a))) + a


def test_truncated_model_keeps_the_function():
    from kdconcepts.quantify.engine import truncated_model
    model = SkipNet().eval()
    x = torch.randn(2, 3, 8, 8)
    fast = truncated_model(model, "add")
    code = fast.extractor.code
    # BN folded into conv1; only the ReLU after conv2 may run in place (a has two users).
    assert "bn" not in code and code.count("relu_(") == 1
    torch.testing.assert_close(fast(x), model(x), rtol=1e-5, atol=1e-6)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(fast(x).pow(2).sum(), x)
    x_ref = x.detach().requires_grad_(True)
    (grad_ref,) = torch.autograd.grad(model(x_ref).pow(2).sum(), x_ref)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-4, atol=1e-6)


# --- work: the sigma_f-only estimate and the settled early stop --------------------------------


def test_sigma_f_alone_equals_the_full_runs_sigma_f():
    from kdconcepts.quantify import estimate_sigma_f
    model, x = TinyNet(), images(3, seed=4)
    full = estimate_sigma(model, "features.3", x, CFG, seed=5, image_keys=["a", "b", "c"])
    sigma_f, usable = estimate_sigma_f(model, "features.3", x[[2, 0]], CFG, seed=5, image_keys=["c", "a"])
    assert torch.equal(sigma_f, full.sigma_f[[2, 0]]) and usable.all()
    sigma_f, usable = estimate_sigma_f(ConstantNet(), "conv", x, CFG, seed=5)
    assert not usable.any()
    # The work count: K forwards for sigma_f, K forward+backward samples per update.
    assert torch.equal(full.sample_passes, full.passes * CFG.samples + CFG.samples)


# lr 1e-3: the trace passes H* well before the decision step, then moves away steadily.
FAST = SigmaConfig(grid=8, steps=40, boost_after=30, samples=6, lr=1e-3, lam=7.0, target_entropy=-2.8)


def test_settled_stop_keeps_the_selected_snapshot_and_saves_steps():
    model, x = TinyNet(), images(4, seed=6)
    full = estimate_sigma(model, "features.3", x, FAST, seed=3)
    settled = estimate_sigma(model, "features.3", x, SigmaConfig(**{**FAST.__dict__, "stop": "settled"}), seed=3)
    assert torch.equal(settled.step, full.step) and torch.equal(settled.sigma, full.sigma)
    assert (settled.passes < full.passes).all()
    for b in range(4):
        # It stopped exactly when the rule first held: M recorded steps past the best by > margin.
        last = int(settled.passes[b])  # the snapshot of step `passes` is the last recorded
        distance = (full.trace[b, : last + 1] - FAST.target_entropy).abs()
        best = float(distance.min())
        assert (distance[-FAST.settle_steps:] > best + FAST.settle_margin).all()
        assert not (distance[-FAST.settle_steps - 1:-1] > float(distance[:-1].min()) + FAST.settle_margin).all()
        torch.testing.assert_close(settled.trace[b, : last + 1], full.trace[b, : last + 1])
        # The benchmark's replay of the rule on the full trace stops at the same step.
        assert settled_last_step(full.trace[b], SigmaConfig(**{**FAST.__dict__, "stop": "settled"})) == last


def test_settled_stop_never_cuts_short_an_image_that_has_not_reached_the_target():
    # CFG reaches H* only after the decision step: every image is boosted, none may stop early.
    model, x = TinyNet(), images(3)
    full = estimate_sigma(model, "features.3", x, CFG, seed=1)
    settled = estimate_sigma(model, "features.3", x, SigmaConfig(**{**CFG.__dict__, "stop": "settled"}), seed=1)
    assert full.boosted.all()
    assert (settled.passes >= CFG.boost_after).all()  # ran past the decision step
    assert torch.equal(settled.step, full.step)


def test_on_a_cpu_an_images_map_is_bit_identical_in_any_batch():
    """Per-image chunks: the exhaustive and the effective-first schedules see the same maps."""
    model, x, keys = TinyBNNet(), images(5, seed=8), ["a", "b", "c", "d", "e"]
    batch = estimate_sigma(model, "features.3", x, CFG, seed=4, image_keys=keys, max_batch=64)
    for subset in ([1], [3, 0], [4, 2, 1]):
        part = estimate_sigma(model, "features.3", x[subset], CFG, seed=4,
                              image_keys=[keys[i] for i in subset], max_batch=64)
        assert torch.equal(part.sigma, batch.sigma[subset])
        assert torch.equal(part.trace, batch.trace[subset])
        assert torch.equal(part.sigma_f, batch.sigma_f[subset])


def test_non_finite_pixels_are_named_before_any_work():
    """A NaN pixel used to make its image "not usable" (sigma_f = NaN), like a dead layer."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1))
    images = torch.rand(3, 3, 8, 8)
    images[1, 0, 2, 2] = float("nan")
    images[2, :, 0, 0] = float("inf")
    cfg = SigmaConfig(grid=4, steps=6, boost_after=4, samples=4)
    with pytest.raises(ValueError, match=r"non-finite pixel values \(NaN or inf\) in image\(s\) "
                                         r"b \(1 value\(s\)\), c \(3 value\(s\)\)"):
        estimate_sigma(net, "0", images, cfg, image_keys=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"in image\(s\) 1 \(1 value"):
        estimate_sigma_f(net, "0", images[:2], cfg)

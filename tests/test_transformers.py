"""ViT methods: token GradCAM identities, rollout against a slow reference, capture leaves logits alone."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from torch import nn

import classcontrast as cc
from tests.reference import gradcam_slow, layer_jacobian
from tests.test_exactness import _check, _contrasts
from tests.test_hygiene import _assert_untouched, _snapshot

# the foil lists include each target itself on purpose (its map must be zero)
pytestmark = pytest.mark.filterwarnings("ignore::classcontrast.errors.ClassContrastWarning")


def tiny_timm() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("deit_tiny_patch16_224", pretrained=False, depth=3, num_classes=6, img_size=64).eval()


def tiny_torchvision() -> nn.Module:
    torch.manual_seed(0)
    m = torchvision.models.VisionTransformer(image_size=64, patch_size=16, num_layers=3, num_heads=2,
                                             hidden_dim=32, mlp_dim=64, num_classes=6)
    nn.init.normal_(m.heads.head.weight)  # torchvision initialises the head to zeros
    return m.eval()


MODELS = {"timm": tiny_timm, "torchvision": tiny_torchvision}


@pytest.fixture(params=list(MODELS))
def vit(request: pytest.FixtureRequest) -> nn.Module:
    return MODELS[request.param]().double()


@pytest.fixture
def vit_x() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(3))


def test_vit_gradcam_contrasts_match_brute_force(vit: nn.Module, vit_x: torch.Tensor) -> None:
    name, block = cc.methods.transformer_blocks(vit)[1]
    y, tokens, g = layer_jacobian(vit, vit_x, block)  # (B, 17, D), (C, B, 17, D)

    def grid(t: torch.Tensor) -> torch.Tensor:  # drop the class token, (…, 16, D) -> (…, D, 4, 4)
        return t[..., 1:, :].reshape(*t.shape[:-2], 4, 4, t.shape[-1]).movedim(-1, -3)

    a, gg = grid(tokens), grid(g)
    phi = torch.stack([torch.stack([gradcam_slow(a[b], gg[s, b]) for b in range(2)]) for s in range(6)])
    for layer in (1, name):
        ex = cc.explain(vit, vit_x, "vit_gradcam", _contrasts(foil=5), cc.TopK(3), layer=layer)
        assert ex["original"].layer_maps.shape == (2, 3, 4, 4)
        _check(ex, phi, y, foil=5)


def test_vit_gradcam_default_layer_and_relu(vit: nn.Module, vit_x: torch.Tensor) -> None:
    ex = cc.explain(vit, vit_x, "vit_gradcam", "weighted")
    assert ex.layer == cc.methods.transformer_blocks(vit)[-2][0]
    relu = cc.explain(vit, vit_x, "vit_gradcam", "weighted", relu=True)
    torch.testing.assert_close(relu.layer_maps, ex.layer_maps.clamp_min(0))


def test_bad_block_index_is_a_clear_error(vit: nn.Module, vit_x: torch.Tensor) -> None:
    with pytest.raises(cc.ClassContrastError, match="block index 7 is out of range"):
        cc.explain(vit, vit_x, "vit_gradcam", layer=7)


def test_vit_methods_need_a_transformer(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    for method in ("vit_gradcam", "attention_rollout"):
        with pytest.raises(cc.ClassContrastError, match="Vision Transformer"):
            cc.explain(tiny, tiny_x, method)


def test_attention_capture_leaves_logits_unchanged(vit: nn.Module, vit_x: torch.Tensor) -> None:
    from contextlib import ExitStack

    with torch.no_grad():
        plain = vit(vit_x)
        with ExitStack() as stack:
            rec = cc.methods.capture_attention(vit, stack)
            captured = vit(vit_x)
        after = vit(vit_x)
    assert len(rec.outputs) == 3 and rec.outputs[0].shape[-2:] == (17, 17)
    torch.testing.assert_close(captured, plain, rtol=1e-12, atol=1e-12)
    assert torch.equal(after, plain)
    assert all("forward" not in m.__dict__ for m in vit.modules())  # torchvision patch undone
    assert all(getattr(m, "fused_attn", True) for m in vit.modules())  # timm flag restored


def _slow_attention(vit: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and each block's attention probabilities, computed by an independent forward pass."""
    attns: list[torch.Tensor] = []
    if hasattr(vit, "blocks"):  # timm: hook the unfused path
        handles = []
        for blk in vit.blocks:
            blk.attn.fused_attn = False
            handles.append(blk.attn.attn_drop.register_forward_hook(lambda m, i, o: attns.append(o)))
        try:
            y = vit(x)
        finally:
            for h in handles:
                h.remove()
            for blk in vit.blocks:
                blk.attn.fused_attn = True
        return y, attns
    # torchvision: run the encoder by hand, asking MultiheadAttention for its own per-head weights
    h = vit._process_input(x)
    h = torch.cat([vit.class_token.expand(h.shape[0], -1, -1), h], dim=1) + vit.encoder.pos_embedding
    for blk in vit.encoder.layers:
        z = blk.ln_1(h)
        mha = blk.self_attention
        heads, dim = mha.num_heads, z.shape[-1]
        qkv = z @ mha.in_proj_weight.T + mha.in_proj_bias
        q, k, v = (qkv[..., i * dim : (i + 1) * dim].unflatten(-1, (heads, dim // heads)).transpose(1, 2)
                   for i in range(3))
        w = torch.softmax(q @ k.transpose(-1, -2) / (dim // heads) ** 0.5, -1)
        _, torch_w = mha(z, z, z, need_weights=True, average_attn_weights=False)
        torch.testing.assert_close(w, torch_w)  # the hand-written attention is torch's
        attns.append(w)
        out = (w @ v).transpose(1, 2).flatten(2) @ mha.out_proj.weight.T + mha.out_proj.bias
        h = h + out
        h = h + blk.mlp(blk.ln_2(h))
    return vit.heads(vit.encoder.ln(h)[:, 0]), attns


def _slow_rollout(vit: nn.Module, x: torch.Tensor, t: int, contrast: str, relu: bool) -> torch.Tensor:
    """Rollout for image 0 with explicit loops: heads averaged, rows normalised one by one."""
    with torch.enable_grad():
        y, attns = _slow_attention(vit, x[:1])
        p = torch.softmax(y, 1)[0]
        others = torch.logsumexp(torch.cat([y[0, :t], y[0, t + 1 :]]), 0)  # weighted: y_t - log Σ_{s≠t} e^{y_s}
        obj = y[0, t] if contrast == "original" else y[0, t] - others
        grads = torch.autograd.grad(obj, attns)
    assert p.shape[0] == 6
    n = attns[0].shape[-1]
    r = torch.eye(n, dtype=x.dtype)
    for a, g in zip(attns, grads, strict=True):
        heads = a.shape[1]
        f = sum(a[0, k] * g[0, k] for k in range(heads)) / heads
        if relu:
            f = torch.where(f > 0, f, torch.zeros_like(f))
        step = (f + torch.eye(n, dtype=x.dtype)) / 2
        for i in range(n):
            step[i] = step[i] / step[i].sum()
        r = step @ r
    return r[0, 1:].reshape(4, 4)


@pytest.mark.parametrize("relu", [False, True])
def test_rollout_matches_slow_reference(vit: nn.Module, vit_x: torch.Tensor, relu: bool) -> None:
    ex = cc.explain(vit, vit_x, "attention_rollout", ["original", "weighted"], [[2, 4], [0, 1]], relu=relu)
    for name in ("original", "weighted"):
        for j, t in enumerate([2, 4]):
            ref = _slow_rollout(vit, vit_x, t, name, relu)
            torch.testing.assert_close(ex[name].layer_maps[0, j], ref, rtol=1e-9, atol=1e-12)


def test_rollout_is_not_the_weighted_identity(vit: nn.Module, vit_x: torch.Tensor) -> None:
    """Documented: rollout is not linear in the gradient, so probability != p(1-p)·weighted."""
    ex = cc.explain(vit, vit_x, "attention_rollout", ["weighted", "probability"], cc.TopK(1))
    p = ex["weighted"].target_probabilities[..., None, None]
    assert not torch.allclose(ex["probability"].layer_maps, p * (1 - p) * ex["weighted"].layer_maps)


def test_vit_state_hygiene(vit: nn.Module, vit_x: torch.Tensor) -> None:
    vit.train()
    before = _snapshot(vit)
    for method in ("vit_gradcam", "attention_rollout"):
        cc.explain(vit, vit_x, method, ["original", "weighted"], cc.TopK(2))
        with pytest.raises(cc.ClassContrastError):
            cc.explain(vit, vit_x, method, targets=99)
    _assert_untouched(vit, before)
    assert all("forward" not in m.__dict__ for m in vit.modules())


def test_probability_identity_for_vit_gradcam(vit: nn.Module, vit_x: torch.Tensor) -> None:
    ex = cc.explain(vit, vit_x, "vit_gradcam", ["weighted", "probability"], cc.TopK(2))
    p = ex["weighted"].target_probabilities[..., None, None]
    torch.testing.assert_close(ex["probability"].maps, p * (1 - p) * ex["weighted"].maps, rtol=1e-9, atol=1e-15)


def test_full_size_deit_tiny_runs() -> None:
    deit = timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()
    x = torch.randn(1, 3, 224, 224)
    for method in ("vit_gradcam", "attention_rollout"):
        ex = cc.explain(deit, x, method, "weighted")
        assert ex.layer_maps.shape == (1, 1, 14, 14) and ex.maps.shape == (1, 1, 224, 224)


def test_vit_figure_layout_from_the_command_line(tmp_path) -> None:
    """Study Figure 5 layout: input | standard | w/o ReLU | contrastive, for GradCAM and rollout."""
    from tests.test_cli import run

    weights = tmp_path / "deit.pth"
    torch.save(timm.create_model("deit_tiny_patch16_224", pretrained=False).state_dict(), weights)
    out = tmp_path / "figs"
    assert run(["evaluate", "figures", "--model", "timm:deit_tiny_patch16_224", "--weights", str(weights),
                "--threshold", "0", "--images", "1", "--limit", "1", "--layer", "10", "--out", str(out)]) == 0
    from PIL import Image

    with Image.open(out / "vit_000.png") as im:  # 2 rows (top-2 classes) × 7 columns
        assert im.size[0] > 2.5 * im.size[1]

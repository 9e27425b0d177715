"""timm ViT/DeiT image checkpoints load into the matching presets and reproduce timm's per-frame features."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from xvit_edge import create_model
from xvit_edge.config import space_only_baseline
from xvit_edge.model.weights import CheckpointError, load_timm_weights, resample_pos_embed

# preset -> (timm model name, timm kwargs) of the same width, heads and patch size. Both sides are cut to
# DEPTH blocks: every block maps the same way, and ViT-B's twelve would make this the suite's slowest test.
DEPTH = 2
MATCHING = {
    "xvit_test": ("vit_tiny_patch16_224", dict(img_size=32, patch_size=8, embed_dim=32, num_heads=2)),
    "xvit_edge_tiny": ("vit_tiny_patch16_224", dict(img_size=160)),
    "xvit_edge_small": ("vit_small_patch16_224", {}),
    "xvit_b16_8": ("vit_base_patch16_224", {}),
    "xvit_b16_16": ("vit_base_patch16_224", {}),
}


def timm_vit(timm, name: str, **kwargs) -> torch.nn.Module:
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    torch.manual_seed(1)
    with torch.no_grad():  # timm zero-initialises some of these; make every tensor matter
        for n, p in model.named_parameters():
            if n.endswith("bias") or "norm" in n or n in ("cls_token", "pos_embed"):
                p.normal_(0, 0.2 if n.endswith("bias") or n in ("cls_token", "pos_embed") else 1)
    return model


@pytest.mark.parametrize("preset", list(MATCHING))
def test_timm_weights_reproduce_timm_features_per_frame(timm, preset):
    name, kwargs = MATCHING[preset]
    ref = timm_vit(timm, name, depth=DEPTH, **kwargs)
    model = create_model(preset, attention="space_only", depth=DEPTH).eval()
    report = load_timm_weights(model, ref.state_dict())
    assert "pos_embed" in report.loaded and not report.resized
    assert "temporal_embed" in report.new and "head.fc2.weight" in report.new
    cfg = model.config
    video = torch.randn(1 if cfg.embed_dim >= 768 else 2, cfg.num_frames, 3, cfg.img_size, cfg.img_size)
    with torch.no_grad():
        ours = model.forward_features(video)  # (B, T, N + 1, C)
        for t in range(cfg.num_frames):
            assert_close(ours[:, t], ref.forward_features(video[:, t]), rtol=1e-4, atol=1e-4)


def test_timm_image_classifier_loads_into_mean_head(timm):
    """Space-only with a mean head and timm's 1000-class head is the image model averaged over frames."""
    ref = timm_vit(timm, "vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    model = create_model(space_only_baseline(create_model("xvit_test").config), num_classes=1000).eval()
    report = load_timm_weights(model, ref.state_dict())
    assert "head.fc.weight" in report.loaded and not report.new
    video = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        expected = torch.stack([ref(video[:, t]) for t in range(4)]).mean(0)
        assert_close(model(video), expected, rtol=1e-4, atol=1e-4)


def test_position_grid_is_resampled_like_timm(timm, tmp_path):
    from timm.layers import resample_abs_pos_embed

    ref = timm_vit(timm, "vit_tiny_patch16_224")  # 14 x 14 grid
    path = tmp_path / "vit_tiny.pth"
    torch.save(ref.state_dict(), path)
    model = create_model("xvit_edge_tiny")  # 160 px: 10 x 10 grid
    report = load_timm_weights(model, path)
    assert report.resized == ["pos_embed (1, 197, 192) -> (1, 101, 192)"]
    expected = resample_abs_pos_embed(ref.pos_embed, new_size=(10, 10), num_prefix_tokens=1)
    assert_close(model.pos_embed.detach(), expected.detach())
    assert_close(resample_pos_embed(ref.pos_embed.detach(), 14), ref.pos_embed.detach())


def test_deit_distilled_checkpoint_drops_the_distillation_token(timm):
    ref = timm_vit(timm, "deit_tiny_distilled_patch16_224", img_size=160)
    model = create_model("xvit_edge_tiny", attention="space_only").eval()
    report = load_timm_weights(model, ref.state_dict())
    assert {"dist_token", "head_dist.weight", "head.weight"} <= set(report.ignored)
    assert_close(model.pos_embed.detach(), torch.cat([ref.pos_embed[:, :1], ref.pos_embed[:, 2:]], 1).detach())


def test_checkpoint_of_another_width_is_refused(timm):
    ref = timm_vit(timm, "vit_small_patch16_224", img_size=160)
    with pytest.raises(CheckpointError, match=r"has shape \(1, 1, 384\) in the file but \(1, 1, 192\).*embed_dim 192"):
        load_timm_weights(create_model("xvit_edge_tiny"), ref.state_dict())


def test_deeper_or_shallower_checkpoint_is_refused(timm):
    ref = timm_vit(timm, "vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2)
    with pytest.raises(CheckpointError, match="blocks.2"):
        load_timm_weights(create_model("xvit_test"), ref.state_dict())
    shallow = {k: v for k, v in ref.state_dict().items() if not k.startswith(("blocks.1.", "blocks.2."))}
    with pytest.raises(CheckpointError, match="missing.*blocks.1"):
        load_timm_weights(create_model("xvit_test"), shallow)


def test_layer_scale_vit_is_refused(timm):
    ref = timm_vit(timm, "vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                   init_values=1e-5)
    with pytest.raises(CheckpointError, match="ls1"):
        load_timm_weights(create_model("xvit_test"), ref.state_dict())


def test_safetensors_checkpoint_loads(timm, tmp_path):
    from safetensors.torch import save_file

    ref = timm_vit(timm, "vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    model = create_model("xvit_test")
    assert "blocks.1.mlp.fc2.weight" in load_timm_weights(model, path).loaded
    torch.testing.assert_close(model.blocks[1].mlp.fc2.weight.detach(), ref.blocks[1].mlp.fc2.weight.detach())
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a valid .safetensors file"):
        load_timm_weights(model, path)

"""Official X-ViT checkpoints (1adrianb/video-transformers) load and reproduce the official forward pass.

`official_forward` re-states the official model's computation with plain functional ops, following the
reference code's structure: images as a (B*T) batch, `temp_embed` added per group of its own length, k and v
shifted by TemporalShift (head-major channels, first fold from t+1, next fold from t-1, zeros at the ends,
within segments of NUM_SEGMENTS frames), and the 'vit' consensus head.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from xvit_edge.model.weights import CheckpointError, load_official_xvit, load_pretrained
from xvit_edge import create_model

DIM, HEADS, DEPTH, PATCH, IMG, CLASSES = 32, 4, 2, 8, 32, 5


def official_state(embed_frames: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def r(*shape, std=0.2):
        return torch.randn(*shape, generator=g) * std

    n = (IMG // PATCH) ** 2 + 1
    sd = {"base_model.patch_embed.proj.weight": r(DIM, 3, PATCH, PATCH), "base_model.patch_embed.proj.bias": r(DIM),
          "base_model.cls_token": r(1, 1, DIM), "base_model.pos_embed": r(1, n, DIM),
          "base_model.temp_embed": r(1, embed_frames, 1, DIM),
          "base_model.norm.weight": 1 + r(DIM), "base_model.norm.bias": r(DIM),
          "new_fc.weight": r(CLASSES, DIM), "new_fc.bias": r(CLASSES),  # unused by the 'vit' consensus
          "consensus.cls_token": r(1, 1, DIM),
          "consensus.mlp_head.0.weight": 1 + r(DIM), "consensus.mlp_head.0.bias": r(DIM),
          "consensus.mlp_head.1.weight": r(DIM, DIM), "consensus.mlp_head.1.bias": r(DIM),
          "consensus.mlp_head.4.weight": r(CLASSES, DIM), "consensus.mlp_head.4.bias": r(CLASSES)}
    for prefix, qkv_bias in [(f"base_model.blocks.{i}.", True) for i in range(DEPTH)] + [("consensus.temporal_encoder.0.", False)]:
        for norm in ("norm1", "norm2"):
            sd[prefix + norm + ".weight"], sd[prefix + norm + ".bias"] = 1 + r(DIM), r(DIM)
        sd[prefix + "attn.qkv.weight"] = r(3 * DIM, DIM)
        if qkv_bias:
            sd[prefix + "attn.qkv.bias"] = r(3 * DIM)
        sd[prefix + "attn.proj.weight"], sd[prefix + "attn.proj.bias"] = r(DIM, DIM), r(DIM)
        sd[prefix + "mlp.fc1.weight"], sd[prefix + "mlp.fc1.bias"] = r(4 * DIM, DIM), r(4 * DIM)
        sd[prefix + "mlp.fc2.weight"], sd[prefix + "mlp.fc2.bias"] = r(DIM, 4 * DIM), r(DIM)
    return sd


def temporal_shift(x: torch.Tensor, n_segment: int, shift_div: int) -> torch.Tensor:
    """The official TemporalShift on k or v of shape (B*T, heads, N, d)."""
    nt, h, n, d = x.shape
    x = x.view(nt // n_segment, n_segment, h, n, d).permute(0, 1, 2, 4, 3).reshape(nt // n_segment, n_segment, h * d, n)
    fold = h * d // shift_div
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]
    out[:, 1:, fold: 2 * fold] = x[:, :-1, fold: 2 * fold]
    out[:, :, 2 * fold:] = x[:, :, 2 * fold:]
    return out.view(nt // n_segment, n_segment, h, d, n).permute(0, 1, 2, 4, 3).reshape(nt, h, n, d)


def official_block(x, sd, prefix, shift=None, eps=1e-6):
    ln = lambda t, name: F.layer_norm(t, (DIM,), sd[prefix + name + ".weight"], sd[prefix + name + ".bias"], eps)  # noqa: E731
    b, n, c = x.shape
    qkv = F.linear(ln(x, "norm1"), sd[prefix + "attn.qkv.weight"], sd.get(prefix + "attn.qkv.bias"))
    q, k, v = qkv.reshape(b, n, 3, HEADS, c // HEADS).permute(2, 0, 3, 1, 4)
    if shift is not None:
        k, v = shift(k), shift(v)
    attn = ((q @ k.transpose(-2, -1)) * (c // HEADS) ** -0.5).softmax(-1)
    x = x + F.linear((attn @ v).transpose(1, 2).reshape(b, n, c), sd[prefix + "attn.proj.weight"], sd[prefix + "attn.proj.bias"])
    hid = F.gelu(F.linear(ln(x, "norm2"), sd[prefix + "mlp.fc1.weight"], sd[prefix + "mlp.fc1.bias"]))
    return x + F.linear(hid, sd[prefix + "mlp.fc2.weight"], sd[prefix + "mlp.fc2.bias"])


def official_forward(sd, video, n_segment, shift_div):
    b, t = video.shape[:2]
    x = F.conv2d(video.flatten(0, 1), sd["base_model.patch_embed.proj.weight"], sd["base_model.patch_embed.proj.bias"], stride=PATCH)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([sd["base_model.cls_token"].expand(b * t, -1, -1), x], 1) + sd["base_model.pos_embed"]
    te = sd["base_model.temp_embed"]
    x = (x.view(x.shape[0] // te.shape[1], te.shape[1], x.shape[1], DIM) + te).view(-1, x.shape[1], DIM)
    for i in range(DEPTH):
        x = official_block(x, sd, f"base_model.blocks.{i}.", lambda z: temporal_shift(z, n_segment, shift_div))
    x = F.layer_norm(x, (DIM,), sd["base_model.norm.weight"], sd["base_model.norm.bias"], 1e-6)[:, 0].view(b, t, DIM)
    x = torch.cat([sd["consensus.cls_token"].expand(b, -1, -1), x], 1)
    # The head's Block and mlp_head use nn.LayerNorm's default eps (1e-5); the backbone uses 1e-6.
    x = official_block(x, sd, "consensus.temporal_encoder.0.", eps=1e-5)[:, 0]
    x = F.layer_norm(x, (DIM,), sd["consensus.mlp_head.0.weight"], sd["consensus.mlp_head.0.bias"], 1e-5)
    x = F.gelu(F.linear(x, sd["consensus.mlp_head.1.weight"], sd["consensus.mlp_head.1.bias"]))
    return F.linear(x, sd["consensus.mlp_head.4.weight"], sd["consensus.mlp_head.4.bias"])


def slowfast_file(tmp_path, sd, **cfg) -> str:
    """A checkpoint as SlowFast saves it: weights under model_state, the YAML config as a string."""
    path = tmp_path / "xvit_official.pth"
    yaml = "DATA:\n  NUM_FRAMES: {frames}\nXVIT:\n  SHIFT_DIV: {shift_div}\n  NUM_SEGMENTS: {segments}\n".format(**cfg)
    torch.save({"epoch": 35, "model_state": sd, "optimizer_state": {}, "cfg": yaml}, path)
    return str(path)


@pytest.mark.parametrize("frames,embed_frames,segments,shift_div", [
    (8, 8, 8, 4),  # SSv2-style: one segment, 50% of channels mixed
    (16, 16, 8, 8),  # Kinetics-style: two independent 8-frame segments, 25% mixed
    (16, 8, 8, 8),  # an 8-entry temp_embed repeated over 16 frames
])
def test_official_checkpoint_reproduces_the_official_forward(tmp_path, frames, embed_frames, segments, shift_div):
    sd = official_state(embed_frames)
    path = slowfast_file(tmp_path, sd, frames=frames, shift_div=shift_div, segments=segments)
    model, pre, report = load_official_xvit(path, num_heads=HEADS)
    cfg = model.config
    assert (cfg.num_frames, cfg.shift_div, cfg.mix_layout, cfg.num_classes) == (frames, shift_div, "global", CLASSES)
    assert pre.mean == (0.5, 0.5, 0.5) and {"new_fc.weight", "new_fc.bias"} == set(report.ignored)
    assert cfg.head_layer_norm_eps == 1e-5
    video = torch.randn(2, frames, 3, IMG, IMG)
    with torch.no_grad():
        assert_close(model(video), official_forward(sd, video, segments, shift_div), rtol=1e-4, atol=1e-4)


def test_shift_div_is_required_when_the_file_does_not_record_it(tmp_path):
    path = tmp_path / "bare.pth"
    torch.save(official_state(8), path)
    with pytest.raises(CheckpointError, match="pass shift_div"):
        load_official_xvit(path, num_heads=HEADS)
    model, _, _ = load_official_xvit(path, shift_div=4, num_heads=HEADS)
    assert model.config.num_frames == 8


def test_timm_checkpoint_is_not_taken_for_an_official_one(tmp_path):
    path = tmp_path / "timm.pth"
    torch.save(create_model("xvit_test").state_dict(), path)
    with pytest.raises(CheckpointError, match="not an official X-ViT checkpoint"):
        load_official_xvit(path, shift_div=4)


def test_official_weights_initialise_a_new_model_for_fine_tuning(tmp_path):
    path = slowfast_file(tmp_path, official_state(8), frames=8, shift_div=4, segments=8)
    model = create_model("xvit_test", embed_dim=DIM, num_heads=HEADS, num_frames=8, num_classes=3,
                         mix_layout="global", patch_size=PATCH, img_size=IMG)
    report = load_pretrained(model, path)
    assert "head.fc2.weight" in report.new and "head.fc2.weight" in report.ignored
    assert "blocks.1.attn.qkv.weight" in report.loaded and "head.blocks.0.attn.qkv.weight" in report.loaded

"""Mimetic initialisation: attention that starts local, which is what lets a from-scratch X-ViT learn motion."""

from __future__ import annotations

import math

import pytest
import torch

from xvit_edge import create_model
from xvit_edge.model.attention import split_heads
from xvit_edge.model.init import mimetic_init_, sincos_pos_embed
from xvit_edge.train.loop import TrainConfig, build_model


def test_sincos_embedding_is_closest_to_itself_and_its_neighbours():
    pe = sincos_pos_embed(6, 32)
    assert pe.shape == (36, 32)
    sim = pe @ pe.T
    assert (sim.argmax(dim=1) == torch.arange(36)).all()
    # similarity falls off with distance along a row: (0,0) is closer to (0,1) than to (0,5)
    assert sim[0, 1] > sim[0, 2] > sim[0, 5]
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_pos_embed(4, 30)


def _block0_attention(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Attention probabilities of the first block's patch queries over their own frame's patch keys (no mixing):
    (B*T, H, N, N)."""
    tokens = model.embed(x).flatten(0, 1)
    blk = model.blocks[0]
    q, k, _ = blk.attn.project(blk.norm1(tokens))
    h = model.config.num_heads
    q, k = split_heads(q, h)[..., 1:, :], split_heads(k, h)[..., 1:, :]
    return ((q * blk.attn.scale) @ k.transpose(-1, -2)).softmax(-1)


@torch.no_grad()
def test_mimetic_attention_starts_local_where_timm_init_is_uniform():
    torch.manual_seed(0)
    kw = dict(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=4, num_frames=4, num_classes=4)
    x = torch.randn(2, 4, 3, 32, 32)
    n = 64
    timm_model = create_model("xvit_test", **kw)
    mimetic = mimetic_init_(create_model("xvit_test", **kw))
    own = torch.eye(n, dtype=torch.bool)
    uniform = _block0_attention(timm_model, x)
    local = _block0_attention(mimetic, x)
    # timm: every key gets about 1/N; mimetic: the query's own position gets many times that
    assert uniform[..., own].mean() < 2.0 / n
    assert local[..., own].mean() > 5.0 / n
    assert (local.argmax(-1) == torch.arange(n)).float().mean() > 0.7
    # W_q starts near the identity; the class token's position entry is zero
    q_rows = mimetic.blocks[0].attn.qkv.weight[:64]
    assert (q_rows - torch.eye(64)).abs().max() < 0.2 and math.isclose(mimetic.pos_embed[0, 0].abs().sum().item(), 0)


def test_training_from_scratch_uses_mimetic_init_unless_told_otherwise():
    torch.manual_seed(0)
    model, _ = build_model(TrainConfig(train_data="", preset="xvit_test"), num_classes=3)
    c = model.config.embed_dim
    assert (model.blocks[0].attn.qkv.weight[c:2 * c] - torch.eye(c)).abs().max() < 0.2
    model, _ = build_model(TrainConfig(train_data="", preset="xvit_test", scratch_init="timm"), num_classes=3)
    assert model.blocks[0].attn.qkv.weight[c:2 * c].abs().max() < 0.1
    with pytest.raises(ValueError, match="scratch_init"):
        build_model(TrainConfig(train_data="", preset="xvit_test", scratch_init="xavier"), num_classes=3)

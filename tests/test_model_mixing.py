"""The mixing attention against a plain loop-based reference written from the paper's equations.

Paper (Bulat et al. 2021, Eqs. 7-10), for query token s of frame t in head h:
    y_{s,t} = sum_{s'} softmax_{s'}(q_{s,t} . k~_{s',t} / sqrt(d_h)) v~_{s',t}
where k~_{s',t} (and v~) is built channel by channel: a channel of borrowed group g is copied from the key
of token s' at frame t + offset_g; frames outside the clip give 0. With summary tokens, the keys/values
of every frame t' averaged over its tokens are appended to the keys/values.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from xvit_edge.config import XViTConfig
from xvit_edge.model.attention import MixingAttention, video_block
from xvit_edge.model.mixing import borrowed, mix_new, mix_time, shift_time


def channel_offset(c: int, cfg: XViTConfig) -> int:
    """Frame offset that channel c (head-major index into C) is borrowed from."""
    within = c % cfg.head_dim if cfg.mix_layout == "per_head" else c
    group = within // cfg.fold
    return cfg.mix_offsets[group] if group < len(cfg.mix_offsets) else 0


def reference_attention(x: torch.Tensor, attn: MixingAttention, cfg: XViTConfig) -> torch.Tensor:
    """Loops over batch, frame, head, token and channel; only the linear projections are vectorised."""
    b_, t_, n_, c_ = x.shape
    h_, d = cfg.num_heads, cfg.head_dim
    qkv = x @ attn.qkv.weight.T + attn.qkv.bias
    q, k, v = qkv[..., :c_], qkv[..., c_ : 2 * c_], qkv[..., 2 * c_ :]
    out = torch.zeros(b_, t_, n_, c_)
    for b in range(b_):
        for t in range(t_):
            for h in range(h_):
                keys = torch.zeros(n_, d)
                vals = torch.zeros(n_, d)
                for s in range(n_):
                    for j in range(d):
                        c = h * d + j
                        src = t + channel_offset(c, cfg)
                        seg = cfg.mix_segment or t_  # frames mix only within their segment
                        if 0 <= src < t_ and src // seg == t // seg:
                            keys[s, j] = k[b, src, s, c]
                            vals[s, j] = v[b, src, s, c]
                if attn.summary:
                    keys = torch.cat([keys] + [k[b, tt, :, h * d : (h + 1) * d].mean(0, keepdim=True) for tt in range(t_)])
                    vals = torch.cat([vals] + [v[b, tt, :, h * d : (h + 1) * d].mean(0, keepdim=True) for tt in range(t_)])
                for s in range(n_):
                    weights = torch.softmax(keys @ q[b, t, s, h * d : (h + 1) * d] / math.sqrt(d), dim=0)
                    out[b, t, s, h * d : (h + 1) * d] = weights @ vals
    return out @ attn.proj.weight.T + attn.proj.bias


def small_config(num_frames: int, **kw) -> XViTConfig:
    return XViTConfig(img_size=16, patch_size=8, embed_dim=16, num_heads=2, depth=1, num_frames=num_frames,
                      num_classes=3, **kw)


CASES = [
    # (frames, causal, layout, shift_div, summary)
    (1, False, "per_head", 4, False),
    (2, False, "per_head", 4, False),
    (3, False, "per_head", 4, True),
    (5, False, "per_head", 4, False),
    (5, False, "per_head", 8, True),
    (4, False, "global", 4, False),
    (4, False, "global", 8, True),
    (2, True, "per_head", 4, False),
    (3, True, "per_head", 4, False),
    (6, True, "global", 4, False),
]
SEGMENT_CASES = [(8, 4, "global", 8), (6, 3, "per_head", 4), (4, 2, "global", 4)]


@pytest.mark.parametrize("frames,causal,layout,shift_div,summary", CASES)
def test_mixing_attention_matches_loop_reference(frames, causal, layout, shift_div, summary):
    torch.manual_seed(frames * 10 + shift_div)
    cfg = small_config(frames, causal=causal, temporal_embed=not causal, mix_layout=layout, shift_div=shift_div,
                       summary_layers=(0,) if summary else ())
    attn = MixingAttention(cfg, summary=summary)
    torch.nn.init.normal_(attn.qkv.bias)  # non-zero biases, so a zero-padded frame differs from a zero input
    x = torch.randn(2, frames, cfg.num_tokens, cfg.embed_dim)
    assert_close(attn(x), reference_attention(x, attn, cfg), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("frames,causal,layout,shift_div,summary", CASES[2:6] + CASES[8:])
def test_block_matches_loop_reference(frames, causal, layout, shift_div, summary):
    torch.manual_seed(frames)
    cfg = small_config(frames, causal=causal, temporal_embed=not causal, mix_layout=layout, shift_div=shift_div,
                       summary_layers=(0,) if summary else ())
    block = video_block(cfg, 0).eval()
    for p in block.parameters():  # LayerNorm affine and biases away from their trivial init
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(1, frames, cfg.num_tokens, cfg.embed_dim)
    h = x + reference_attention(block.norm1(x), block.attn, cfg)
    expected = h + block.mlp(block.norm2(h))
    assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


def test_shift_time_zero_pads_clip_ends():
    x = torch.arange(1, 5, dtype=torch.float32).view(1, 4, 1)  # frames 1, 2, 3, 4
    assert shift_time(x, 1).flatten().tolist() == [2, 3, 4, 0]
    assert shift_time(x, -1).flatten().tolist() == [0, 1, 2, 3]
    assert shift_time(x, -2).flatten().tolist() == [0, 0, 1, 2]
    assert shift_time(x, 4).flatten().tolist() == [0, 0, 0, 0]


def test_mix_time_groups_follow_the_paper_order():
    # 4 frames, 8 channels, fold 2: channels 0-1 from t+1, 2-3 from t-1, 4-7 from t.
    x = torch.arange(4, dtype=torch.float32).view(1, 4, 1).expand(1, 4, 8) + 1
    y = mix_time(x, 2, (1, -1))[0]
    assert y[1].tolist() == [3, 3, 1, 1, 2, 2, 2, 2]
    assert y[3].tolist() == [0, 0, 3, 3, 4, 4, 4, 4]
    causal = mix_time(x, 2, (-1, -2))[0]
    assert causal[2].tolist() == [2, 2, 1, 1, 3, 3, 3, 3]


@pytest.mark.parametrize("offsets", [(-1, -2), (-2, -1), (-1, -3)])
@pytest.mark.parametrize("frames", [1, 2, 3, 5])
def test_mix_new_from_borrowed_channels_is_the_last_frame_of_mix_time(offsets, frames):
    """A stream keeps only the borrowed channels of its last W frames, zeros before it starts (the clip's
    zero padding); the newest frame's mix from them is the clip's, exactly."""
    x = torch.randn(2, frames, 5, 12)
    w = max(-o for o in offsets)
    window = torch.cat([torch.zeros(2, max(w + 1 - frames, 0), 5, 12), x], dim=1)[:, -(w + 1):]
    past = borrowed(window[:, :-1], 3, offsets)
    assert past.shape == (2, w, 5, 6)
    assert_close(mix_new(past, x[:, -1:], 3, offsets), mix_time(x, 3, offsets)[:, -1:], rtol=0, atol=0)


def test_mix_new_refuses_offsets_it_cannot_serve():
    with pytest.raises(ValueError, match="borrows only from the 2 frames"):
        mix_new(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 8), 2, (1, -1))


def test_causal_mixing_never_sees_the_future():
    torch.manual_seed(0)
    cfg = small_config(5, causal=True, temporal_embed=False)
    attn = MixingAttention(cfg)
    x = torch.randn(1, 5, cfg.num_tokens, cfg.embed_dim)
    y = attn(x)
    x2 = x.clone()
    x2[:, 3:] = torch.randn_like(x2[:, 3:])  # change frames 3 and 4 only
    assert_close(attn(x2)[:, :3], y[:, :3])
    assert not torch.allclose(attn(x2)[:, 3], y[:, 3])


@pytest.mark.parametrize("frames,segment,layout,shift_div", SEGMENT_CASES)
def test_segmented_mixing_matches_loop_reference(frames, segment, layout, shift_div):
    """The official Kinetics configs mix within independent segments (8 of 16 frames)."""
    cfg = small_config(frames, mix_segment=segment, mix_layout=layout, shift_div=shift_div)
    attn = MixingAttention(cfg)
    torch.nn.init.normal_(attn.qkv.bias)
    x = torch.randn(2, frames, cfg.num_tokens, cfg.embed_dim)
    assert_close(attn(x), reference_attention(x, attn, cfg), rtol=1e-5, atol=1e-5)

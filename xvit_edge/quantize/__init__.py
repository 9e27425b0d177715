"""int8 quantization of X-ViT through PyTorch's PT2E flow, for the XNNPACK runtime (ExecuTorch) and ONNX QDQ.

`python -m xvit_edge.quantize --checkpoint CKPT --data DIR --mode qat|ptq --out OUT.pt`

- **QAT** (quantization-aware training): `torch.export` the model, `prepare_qat_pt2e` with the XNNPACK
  quantizer, fine-tune the fake-quantized graph briefly (AdamW, small learning rate), `convert_pt2e`.
- **PTQ** (post-training quantization, the baseline): `prepare_pt2e`, observe a few calibration batches,
  `convert_pt2e`.

A causal model's streaming step is calibrated too, on the same clips streamed frame by frame (`stream`), so
that stream mode exports in int8 as well.

Both: int8 symmetric per-channel weights, int8 per-tensor (affine) activations (see `scheme`). After
quantization the int8 model is compared with fp32 on the held-out split (SQNR of the logits, top-1
agreement, accuracy of both) and saved as a checkpoint that export rebuilds exactly (`checkpoint`).

What runs in int8, and what deliberately stays float
----------------------------------------------------
int8: the patch-embedding convolution; every linear layer (qkv, attention output projection, MLP fc1/fc2,
the temporal head's linears); the residual and position-embedding adds; the query scaling; the
concatenations (class token, the mixing's borrowed channel groups). These are what the XNNPACK
quantizer annotates, and they carry the arithmetic: per block and frame the linear layers cost 12·N·C²
multiply-accumulates against 2·N²·C for the attention matmuls, so for `xvit_edge_tiny` (N = 101 tokens,
C = 192) about 92% of all MACs run in int8.

float: LayerNorm, softmax, the two attention matmuls (Q·Kᵀ and softmax·V) and GELU.
- LayerNorm divides by a per-token standard deviation, and ViT activations have a few outlier channels
  far above the rest: one per-tensor int8 scale would crush the other channels to a handful of levels.
- softmax is an exponential whose outputs span orders of magnitude inside [0, 1]; small attention weights
  would round to zero.
- The attention matmuls multiply two activations (no weight); the quantizer has no static int8 pattern for
  them, and the left operand of softmax·V is exactly the probability tensor above. They are ~8% of the MACs
  at 101 tokens and still run in XNNPACK, in fp32.
- GELU is elementwise and cheap; it sits between fc1's int8 output and fc2's int8 input behind one
  dequantize/quantize pair.
The float ops bound the speed-up over fp32 on the CPU: int8 attention matmuls are where more would come from.
The split that a model actually got is recorded in its checkpoint and sidecar (`op_precisions`).

Robustness: a batch with NaN/inf inputs, or whose outputs or loss come out non-finite, is logged, counted and
skipped without touching the observers (`guard`). The model is captured in eval mode and its graph stays so
(see `scheme.capture`): QAT fine-tunes without dropout and stochastic depth.
"""

from .benchmark import quantization_benchmark
from .calibrate import calibrate, quantize_ptq
from .checkpoint import QuantizedCheckpoint, activations_of, is_quantized, load_quantized, save_quantized
from .convert import QuantizedModel, convert, op_precisions
from .guard import ObserverGuard
from .pipeline import QuantizeOptions, quantize, quantize_checkpoint
from .qat import fine_tune, qat_step
from .scheme import DEFAULT_SCHEME, MODES, SCHEMES, prepare, quantizer_settings
from .stream import StreamedClips, quantize_step

__all__ = [
    "DEFAULT_SCHEME", "MODES", "SCHEMES", "activations_of", "ObserverGuard", "QuantizeOptions", "QuantizedCheckpoint", "QuantizedModel", "calibrate", "convert",
    "fine_tune", "is_quantized", "load_quantized", "op_precisions", "prepare", "qat_step", "quantization_benchmark",
    "quantize", "quantize_checkpoint", "quantize_ptq", "quantize_step", "quantizer_settings", "save_quantized",
    "StreamedClips",
]

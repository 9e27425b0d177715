"""Files shipped inside the package: the default checkpoint that export and the demo apps use out of the box.

`xvit_edge_nano_synthetic.pt` is the smallest mobile preset (`xvit_edge_nano`, causal variant so that it
serves both clip and incremental streaming) trained from scratch on the synthetic temporal benchmark by

    python -m xvit_edge.bench.accuracy --models causal space_only --lr 4e-4 --epochs 30 \
        --focus rotate_cw rotate_ccw --focus-epochs 16 --jobs 2 --threads 2 \
        --save-checkpoint xvit_edge/assets/xvit_edge_nano_synthetic.pt

(the exact recipe and its held-out scores are stored inside the file, under `provenance`). It is a working
example for the toolchain, not a model of real-world actions: fine-tune your own with `python -m xvit_edge.train`.

`xvit_edge_nano_synthetic_int8.pt` is its int8 form (PTQ, the clip model and the streaming step calibrated on
the benchmark's training split; the scheme, calibration and held-out SQNR / accuracy are inside the file):

    python -m xvit_edge.data.synthetic --out data/synthetic --train-per-class 400 --val-per-class 50
    python -m xvit_edge.quantize --checkpoint xvit_edge/assets/xvit_edge_nano_synthetic.pt \
        --data data/synthetic --mode ptq --out xvit_edge/assets/xvit_edge_nano_synthetic_int8.pt

so that `python -m xvit_edge.export --precision int8` (clip or stream) works with no checkpoint given.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_CHECKPOINT = Path(__file__).with_name("xvit_edge_nano_synthetic.pt")
DEFAULT_INT8_CHECKPOINT = Path(__file__).with_name("xvit_edge_nano_synthetic_int8.pt")


def default_checkpoint(int8: bool = False) -> Path:
    """Path of the checkpoint shipped with the package (`int8`: its quantized form); a FileNotFoundError that
    says what to do if absent."""
    path = DEFAULT_INT8_CHECKPOINT if int8 else DEFAULT_CHECKPOINT
    if not path.is_file():
        how = (f"python -m xvit_edge.quantize --checkpoint {DEFAULT_CHECKPOINT} --data DIR --mode ptq --out {path}"
               if int8 else f"python -m xvit_edge.bench.accuracy --save-checkpoint {path}")
        raise FileNotFoundError(f"the default checkpoint {path.name} is not installed with this copy of xvit_edge; "
                                f"pass --checkpoint, or make it with: {how}")
    return path

"""Files shipped inside the package: the default checkpoint that export and the demo apps use out of the box.

`xvit_edge_nano_synthetic.pt` is the smallest mobile preset (`xvit_edge_nano`, causal variant so that it
serves both clip and incremental streaming) trained from scratch on the synthetic temporal benchmark by

    python -m xvit_edge.bench.accuracy --models causal space_only --lr 4e-4 --epochs 30 \
        --focus rotate_cw rotate_ccw --focus-epochs 16 --jobs 2 --threads 2 \
        --save-checkpoint xvit_edge/assets/xvit_edge_nano_synthetic.pt

(the exact recipe and its held-out scores are stored inside the file, under `provenance`). It is a working
example for the toolchain, not a model of real-world actions: fine-tune your own with `python -m xvit_edge.train`.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_CHECKPOINT = Path(__file__).with_name("xvit_edge_nano_synthetic.pt")


def default_checkpoint() -> Path:
    """Path of the checkpoint shipped with the package; a FileNotFoundError that says what to do if absent."""
    if not DEFAULT_CHECKPOINT.is_file():
        raise FileNotFoundError(
            f"the default checkpoint {DEFAULT_CHECKPOINT.name} is not installed with this copy of xvit_edge; "
            "pass --checkpoint, or make it with: python -m xvit_edge.bench.accuracy --save-checkpoint "
            f"{DEFAULT_CHECKPOINT}")
    return DEFAULT_CHECKPOINT

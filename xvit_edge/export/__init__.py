"""Export a checkpoint to ExecuTorch (.pte, XNNPACK), Core ML (.mlpackage) and ONNX, each verified against
the eager model, each with a sidecar JSON for the runtime. `python -m xvit_edge.export --help`.

Mode `clip` exports the whole-clip classifier; mode `stream` the incremental step of a causal model, with its
state as explicit tensors in and out, or for Core ML kept inside the model as Core ML states (see `stream.py`).

What is exported (`subject.py`: the module, its samples, its reference outputs and bar) and where it goes
(`target.py`, one module per runtime, registered in `targets.py`) meet in `pipeline.export`.
"""

from .errors import ExportError
from .modes import MODES
from .pipeline import Artifact, export
from .targets import TARGETS

__all__ = ["MODES", "TARGETS", "Artifact", "ExportError", "export"]

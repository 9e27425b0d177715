"""Checking an exported artifact against its sidecar before the first frame: the sidecar must describe this
very file (its sha256, recorded at export), the file must be what its extension claims (checked before a
runtime that could abort the process reads it), and the shapes the artifact declares must be the ones the
sidecar promises (input, state, one logit per label)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..export.sidecar import artifact_digest


class ArtifactMismatch(ValueError):
    """An artifact and its sidecar that do not belong together; the message says what differs."""


def check_digest(path: Path, sidecar: dict[str, Any], sidecar_path: Path) -> None:
    recorded = sidecar.get("artifact_sha256")
    if recorded is not None and recorded != artifact_digest(path):
        raise ArtifactMismatch(f"{path}: its sidecar {sidecar_path.name} was written for another file (sha256 "
                               "differs); use the sidecar exported with this artifact, or export it again")
    if sidecar["artifact"] != path.name:
        raise ArtifactMismatch(f"{sidecar_path}: describes {sidecar['artifact']!r}, not {path.name!r}")


def check_file_kind(path: Path, kind: str) -> None:
    """Refuse a file that is not the format its extension names."""
    if kind == "executorch":
        from ..export.executorch import looks_like_pte

        if not looks_like_pte(path):
            raise ArtifactMismatch(f"{path}: not an ExecuTorch program (no ExecuTorch header)")
    elif kind == "onnx":
        with open(path, "rb") as f:
            head = f.read(1)
        if head != b"\x08":  # an ONNX ModelProto starts with its ir_version field (tag 1, varint)
            raise ArtifactMismatch(f"{path}: not an ONNX model (it does not start with an ONNX ir_version)")


def check_shapes(path: Path, sidecar: dict[str, Any], inputs: list[list[int]], outputs: list[list[int]]) -> None:
    """The artifact's declared I/O shapes against the sidecar's input, state and label count."""
    want_in = [sidecar["input"]["shape"]]
    if sidecar["mode"] == "stream":
        want_in += [sidecar["state_shapes"][name] for name in sidecar["state_shapes"]]
    problems = []
    if len(inputs) != len(want_in) or any(not _fits(have, want) for have, want in zip(inputs, want_in)):
        problems.append(f"inputs {inputs}, the sidecar says {want_in}")
    logits = [1, len(sidecar["labels"])]
    if not outputs or not _fits(outputs[0], logits):
        problems.append(f"logits {outputs[0] if outputs else None}, the sidecar's {len(sidecar['labels'])} labels "
                        f"need {logits}")
    if problems:
        raise ArtifactMismatch(f"{path}: does not match its sidecar: " + "; ".join(problems)
                               + "; export the model again")


def _fits(have: list[int], want: list[int]) -> bool:
    return len(have) == len(want) and all(h in (w, -1) for h, w in zip(have, want))

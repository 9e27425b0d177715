"""Shared fixtures."""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types

import pytest
import torch


class _Stub:
    """Stands in for any torchvision class or constant that timm touches at import time."""

    def __init__(self, *args, **kwargs) -> None:
        pass


class _StubMeta(type):
    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _StubMeta(name, (_Stub,), {})
        setattr(cls, name, value)
        return value


class _StubModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _StubMeta(name, (_Stub,), {})


class _StubFinder:
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module) -> None:
        pass


@pytest.fixture(scope="session")
def timm():
    """timm, importable without torchvision.

    timm imports torchvision for its data pipeline, and PyPI has no CPU torchvision build for this torch.
    The ViT model code the tests use needs none of it, so when torchvision cannot be imported an empty
    stand-in is registered for it (only in the test process, never in the library).
    """
    try:
        import torchvision  # noqa: F401
    except Exception:
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        sys.meta_path.insert(0, _StubFinder())
    return importlib.import_module("timm")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def make_causal_test_model():
    """xvit_test's streaming (causal) variant, random weights; the head is moved away from its near-zero
    initialisation so the logits are O(1) and a parity bound of 1e-4 means something."""
    from xvit_edge import create_model, get_config
    from xvit_edge.config import causal_variant

    torch.manual_seed(0)
    model = create_model(causal_variant(get_config("xvit_test"))).eval()
    with torch.no_grad():
        model.head.cls_token.normal_(0, 0.2)
        model.head.fc1.weight.normal_(0, 0.3)
        model.head.fc2.weight.normal_(0, 0.5)
    return model


@pytest.fixture(scope="session")
def causal_test_model():
    return make_causal_test_model()


@pytest.fixture(scope="session")
def stream_artifacts(causal_test_model, tmp_path_factory):
    """The causal test model as a checkpoint and exported in stream mode to ExecuTorch and ONNX (built once)."""
    from xvit_edge import Preprocessing
    from xvit_edge.export import export
    from xvit_edge.model.weights import save_checkpoint

    out = tmp_path_factory.mktemp("stream_artifacts")
    labels = [f"action_{i}" for i in range(causal_test_model.config.num_classes)]
    pre = Preprocessing.for_size(causal_test_model.config.img_size, mean=(0.5,) * 3, std=(0.5,) * 3)
    save_checkpoint(out / "causal.pt", causal_test_model, labels, pre)
    arts = {target: export(causal_test_model, labels, pre, target, out, mode="stream", samples=2)
            for target in ("executorch", "onnx")}
    return {"checkpoint": out / "causal.pt", "labels": labels, "preprocessing": pre, **arts}


@pytest.fixture(scope="session")
def int8_stream(causal_test_model, tmp_path_factory):
    """A PTQ int8 checkpoint of the causal test model (clip graph and streaming step calibrated on seeded
    synthetic clips), the quantized model it was saved from (`ptq`) and rebuilt from it (`quantized`), and its
    int8 step exported to ExecuTorch (built once)."""
    from xvit_edge import Preprocessing
    from xvit_edge.export import export
    from xvit_edge.export.verify import sample_inputs
    from xvit_edge.quantize import load_quantized, quantize_ptq, save_quantized

    out = tmp_path_factory.mktemp("int8_stream")
    cfg = causal_test_model.config
    labels = [f"action_{i}" for i in range(cfg.num_classes)]
    pre = Preprocessing.for_size(cfg.img_size, mean=(0.5,) * 3, std=(0.5,) * 3)
    clips = torch.cat(sample_inputs(cfg, 8, seed=11, preprocessing=pre))
    q = quantize_ptq(causal_test_model, [clips[:4], clips[4:]], max_batches=2)
    assert q.step_converted is not None
    save_quantized(out / "int8.pt", q, labels, pre)
    quantized = load_quantized(out / "int8.pt", stream=True)
    art = export(causal_test_model, labels, pre, "executorch", out, "int8", mode="stream", samples=2,
                 quantized=quantized)
    return {"checkpoint": out / "int8.pt", "ptq": q, "quantized": quantized, "labels": labels, "preprocessing": pre,
            "executorch": art}

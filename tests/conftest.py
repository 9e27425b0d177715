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

"""The bars an artifact's outputs must meet against what it must reproduce (`Subject.reference`).

fp32: the eager model's outputs within `FP32_ATOL`. int8: the converted int8 model's outputs by SQNR and
top-1 agreement (int8 kernels round differently from PyTorch's reference ones, so exact equality is not the
bar); the artifact's distance from the float model is recorded beside it for information.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ExportError
from .int8 import INT8_MIN_AGREEMENT, INT8_MIN_SQNR_DB, check_int8_parity

# fp32 parity bound for the artifacts that run here (the model's logits are O(1)).
FP32_ATOL = 1e-4

# Given the artifact's outputs, how they compare with the float model's (`Subject.compare_with_float`).
VsFloat = Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class Fp32Bar:
    """The artifact reproduces the eager model: max abs diff <= `atol`."""

    atol: float = FP32_ATOL

    def judge(self, target: str, parity: dict[str, Any], vs_float: VsFloat, reference: str) -> dict[str, Any]:
        if parity["max_abs_diff"] > self.atol:
            raise ExportError(f"{target} artifact disagrees with the eager model: max abs diff "
                              f"{parity['max_abs_diff']:.3g} > {self.atol}")
        return {}


@dataclass(frozen=True)
class Int8Bar:
    """The artifact reproduces the converted int8 model: SQNR >= `min_sqnr_db` and top-1 agreement >=
    `min_top1_agreement`. Adds to the report how far the artifact is from the float model."""

    min_sqnr_db: float = INT8_MIN_SQNR_DB
    min_top1_agreement: float = INT8_MIN_AGREEMENT

    def judge(self, target: str, parity: dict[str, Any], vs_float: VsFloat, reference: str) -> dict[str, Any]:
        parity["reference"] = reference
        vs_fp32 = vs_float()
        parity["bar"] = {"min_sqnr_db": float(self.min_sqnr_db), "min_top1_agreement": self.min_top1_agreement}
        check_int8_parity(target, parity, self.min_sqnr_db, vs_fp32)
        return {"int8_vs_fp32": vs_fp32}


@dataclass(frozen=True)
class SqnrBar:
    """The artifact reproduces the eager model to `min_sqnr_db` and `min_top1_agreement`: for artifacts that
    round by design (fp16 compute or states, weight-only int8), with bars chosen from measurement."""

    min_sqnr_db: float
    min_top1_agreement: float = INT8_MIN_AGREEMENT

    def judge(self, target: str, parity: dict[str, Any], vs_float: VsFloat, reference: str) -> dict[str, Any]:
        parity["bar"] = {"min_sqnr_db": float(self.min_sqnr_db), "min_top1_agreement": self.min_top1_agreement}
        if parity["sqnr_db"] < self.min_sqnr_db or parity["top1_agreement"] < self.min_top1_agreement:
            raise ExportError(f"{target} artifact disagrees with the eager model: SQNR {parity['sqnr_db']:.1f} dB "
                              f"(need >= {self.min_sqnr_db:g}), top-1 agreement "
                              f"{100 * parity['top1_agreement']:.1f}% (need >= {100 * self.min_top1_agreement:.0f}%)")
        return {}


Bar = Fp32Bar | Int8Bar | SqnrBar

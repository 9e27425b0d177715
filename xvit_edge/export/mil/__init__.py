"""A numpy evaluator of the ML Program that coremltools saved into an `.mlpackage`, so that a Core ML export
is checked numerically where Core ML cannot run (`MILProgram`; the precision rule in `program`)."""

from .ops import UnsupportedOpError
from .program import MILProgram

__all__ = ["MILProgram", "UnsupportedOpError"]

"""Every command's --help: each flag explained, and no "(default: None)" noise after a help text that already
says what happens without the flag."""

from __future__ import annotations

import importlib

import pytest

COMMANDS = ["xvit_edge.train.__main__", "xvit_edge.evaluate", "xvit_edge.quantize.__main__",
            "xvit_edge.export.__main__", "xvit_edge.bench.__main__", "xvit_edge.bench.accuracy",
            "xvit_edge.bench.quantization", "xvit_edge.bench.profile", "xvit_edge.bench.web",
            "apps.webcam", "apps.annotate", "apps.quickstart", "apps.web.__main__"]


@pytest.mark.parametrize("module", COMMANDS)
def test_help_explains_every_flag_without_empty_defaults(module):
    parser = importlib.import_module(module).build_parser()
    text = " ".join(parser.format_help().split())  # argparse wraps lines
    for action in parser._actions:
        assert action.help and len(action.help) > 10, (module, action.option_strings)
    assert "(default: None)" not in text and "(default: False)" not in text, module

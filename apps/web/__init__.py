"""The browser demo: `python -m apps.web [--model ARTIFACT]` serves a page that runs a stream-mode ONNX step
in the browser with onnxruntime-web (camera or video file in, label, confidence, fps and latency over the
video out). See docs/web.md; the page is in `static/`, the server in `server.py`."""

"""Demo apps on top of the streaming runtime, run from the repository root:

    python -m apps.webcam --model ARTIFACT --source 0        # live camera, file or URL, with an overlay
    python -m apps.annotate --model ARTIFACT --input clip.mp4 --output annotated.mp4
    python -m apps.web [--model STREAM.onnx]                 # the model in a web page (onnxruntime-web)
    python -m apps.quickstart                                # export, then annotate a demo clip

They are not part of the installed `xvit_edge` package.
"""

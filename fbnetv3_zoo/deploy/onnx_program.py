"""An exported ``.onnx`` file run by ONNX Runtime, with the preprocessing it was checked with.

The ONNX counterpart of ``PteProgram``: call it with a batch tensor, or
:meth:`OnnxProgram.classify` a PIL image / uint8 array through the
``<file>.preprocess.json`` the export wrote beside it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from fbnetv3_zoo.deploy.preprocess import preprocess_beside, require_preprocess


class OnnxProgram:
    """A ``.onnx`` file in an ONNX Runtime CPU session; ``preprocess`` is its sidecar or None."""

    def __init__(self, path: str | os.PathLike) -> None:
        from fbnetv3_zoo.optional import require

        ort = require("onnxruntime", "OnnxProgram")

        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.preprocess = preprocess_beside(path)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of input tensors (N x 3 x H x W, already preprocessed)."""
        feed = {self.input_name: images.detach().cpu().float().contiguous().numpy()}
        return torch.from_numpy(self.session.run(None, feed)[0])

    def classify(self, image: Any) -> torch.Tensor:
        """The logits of one PIL image or uint8 array, preprocessed by the sidecar JSON."""
        return self(require_preprocess(self.preprocess, str(self.path)).to_input(image))[0]

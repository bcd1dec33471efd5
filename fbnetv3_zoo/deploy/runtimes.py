"""The backends a latency table can be measured on, in one place.

Kept free of torch so that the command-line parsers (``fbnetv3 latency``,
``fbnetv3 info --latency``, ``--constraint latency_ms<=X@BACKEND``) can list
the choices without loading it.
"""

# torch: PyTorch eager on the CPU; cuda: the same on the GPU; onnxruntime: ONNX Runtime's CPU
# provider; executorch: an XNNPACK program (the [mobile] extra), as phones run it
LATENCY_BACKENDS = ("onnxruntime", "torch", "cuda", "executorch")

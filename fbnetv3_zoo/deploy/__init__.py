"""Deployment: ONNX / TorchScript export verified against eager PyTorch, ExecuTorch
(``.pte``) lowering, the runtimes a model can run on, and the ``fbnetv3 benchmark`` table.
"""

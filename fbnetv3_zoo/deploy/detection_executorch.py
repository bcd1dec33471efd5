"""ExecuTorch (XNNPACK ``.pte``) for the mobile task models: segmenters and SSDLite's network.

Both go through ``export_executorch`` (the one lowering and its parity check
against eager on seeded, normalised images).  What lowers:

* LR-ASPP (and DeepLabV3): the whole segmenter, its ``out`` logits (input: a
  normalised image).
* SSDLite: the network only (backbone, extra blocks, head), giving per default
  box the 4 box-regression values then the class logits.  The full detector
  does not lower: ``torch.export`` stops at torchvision's batched NMS
  (``GuardOnDataDependentSymNode``: the number of boxes it keeps depends on the
  data) and ExecuTorch has no kernel for ``torchvision::nms``.  The app decodes
  the boxes with the model's default boxes (``default_boxes``) and runs its own NMS,
  as mobile SSD deployments do.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from fbnetv3_zoo.deploy.detection_export import _Logits
from fbnetv3_zoo.deploy.executorch import export_executorch
from fbnetv3_zoo.deploy.export import ExportResult

__all__ = [
    "SSDLiteNetwork",
    "default_boxes",
    "export_segmenter_executorch",
    "export_ssdlite_executorch",
]


class SSDLiteNetwork(nn.Module):
    """An SSD's backbone and head without resizing, normalising, decoding or NMS.

    Input: a batch of normalised images at the detector's fixed size; output
    ``(N, boxes, 4 + num_classes)``: box regression (``model.box_coder``'s
    encoding against ``default_boxes``), then class logits.
    """

    def __init__(self, ssd: nn.Module) -> None:
        super().__init__()
        self.backbone = ssd.backbone
        self.head = ssd.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(list(self.backbone(x).values()))
        return torch.cat([out["bbox_regression"], out["cls_logits"]], dim=-1)


def default_boxes(ssd: nn.Module) -> torch.Tensor:
    """The detector's default boxes (x1, y1, x2, y2 in pixels of its fixed size), in the
    order of ``SSDLiteNetwork``'s rows: what an app decodes the regression against."""
    from torchvision.models.detection.image_list import ImageList

    h, w = ssd.transform.fixed_size
    images = ImageList(torch.zeros(1, 3, h, w), [(h, w)])
    with torch.no_grad():
        maps = list(ssd.backbone.to("cpu")(images.tensors).values())
    return ssd.anchor_generator(images, maps)[0]


def export_ssdlite_executorch(
    ssd: nn.Module, out: str | os.PathLike, overwrite: bool = False
) -> ExportResult:
    """Lower SSDLite's network (see the module docstring) at its fixed size, verified."""
    h, w = ssd.transform.fixed_size
    if h != w:
        raise ValueError(f"ExecuTorch export takes a square size; this SSDLite has {h}x{w}")
    return export_executorch(SSDLiteNetwork(ssd.eval()).eval(), out, h, overwrite=overwrite)


def export_segmenter_executorch(
    model: nn.Module, out: str | os.PathLike, input_size: int, overwrite: bool = False
) -> ExportResult:
    """Lower a segmenter's ``out`` logits at ``input_size``, verified."""
    return export_executorch(_Logits(model.eval()).eval(), out, input_size, overwrite=overwrite)

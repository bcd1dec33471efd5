"""torch.hub entry points: ``torch.hub.load("<owner>/<repo>", "fbnetv3_b", pretrained=True)``.

Works from a plain checkout (``source="local"``) without installing the package;
needs only torch and timm.
"""

dependencies = ["torch", "timm"]


def _create(ref, pretrained: bool | None, **kwargs):
    import fbnetv3_zoo  # the one model resolver (fbnetv3_zoo.weights.resolve), as every command uses

    return fbnetv3_zoo.create_model(ref, pretrained=pretrained, **kwargs)


def fbnetv3_a(pretrained: bool = False, **kwargs):
    """FBNetV3-A as published (facts: ``fbnetv3 info fbnetv3_a``); kwargs go to timm.create_model."""
    return _create("fbnetv3_a", pretrained, **kwargs)


def fbnetv3_b(pretrained: bool = False, **kwargs):
    """FBNetV3-B as published (facts: ``fbnetv3 info fbnetv3_b``); kwargs go to timm.create_model."""
    return _create("fbnetv3_b", pretrained, **kwargs)


def fbnetv3_c(pretrained: bool = False, **kwargs):
    """FBNetV3-C as published (facts: ``fbnetv3 info fbnetv3_c``); kwargs go to timm.create_model."""
    return _create("fbnetv3_c", pretrained, **kwargs)


def fbnetv3_d(pretrained: bool = False, **kwargs):
    """FBNetV3-D as published (facts: ``fbnetv3 info fbnetv3_d``); kwargs go to timm.create_model."""
    return _create("fbnetv3_d", pretrained, **kwargs)


def fbnetv3_e(pretrained: bool = False, **kwargs):
    """FBNetV3-E as published (facts: ``fbnetv3 info fbnetv3_e``); kwargs go to timm.create_model."""
    return _create("fbnetv3_e", pretrained, **kwargs)


def fbnetv3_f(pretrained: bool = False, **kwargs):
    """FBNetV3-F as published (facts: ``fbnetv3 info fbnetv3_f``); kwargs go to timm.create_model."""
    return _create("fbnetv3_f", pretrained, **kwargs)


def fbnetv3_g(pretrained: bool = False, **kwargs):
    """FBNetV3-G as published (facts: ``fbnetv3 info fbnetv3_g``); kwargs go to timm.create_model."""
    return _create("fbnetv3_g", pretrained, **kwargs)


def fbnetv3(arch, pretrained: bool | None = None, **kwargs):
    """Any model reference: an ArchSpec, its dict, a YAML path (e.g. a search result), a zoo,
    timm or ``torchvision/`` name, or ``local-dir:<folder>`` (with its weights unless
    ``pretrained=False``); kwargs go to the builder."""
    return _create(arch, pretrained, **kwargs)


# detectors and segmenters in torchvision's naming (fasterrcnn_fbnetv3_a_fpn, lraspp_fbnetv3_a, ...):
# one entry per name, made here from the pure-Python name lists (no torch import until called)
def _task_entry(name: str, module: str, builder: str, what: str):
    def entry(**kwargs):
        import importlib

        return getattr(importlib.import_module(module), builder)(name, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = (
        f"The {what} {name} (torchvision's API; no published {what} weights): kwargs go to "
        f"{module}.{builder} (num_classes with background, weights_backbone='fb_in1k' or a file, ...)."
    )
    return entry


def _register_tasks() -> None:
    from fbnetv3_zoo.detection.names import DETECTORS, SEGMENTERS

    for name in DETECTORS:
        globals()[name] = _task_entry(name, "fbnetv3_zoo.detection", "create_detector", "detector")
    for name in SEGMENTERS:
        globals()[name] = _task_entry(
            name, "fbnetv3_zoo.segmentation", "create_segmenter", "segmenter"
        )


_register_tasks()

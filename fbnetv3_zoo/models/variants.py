"""FBNetV3-A…G as ArchSpec data, each beside its official facts.

Each stage is a list of rows ``(kernel, expansion, channels, repeats, stride, se)``;
an optional seventh entry overrides the depthwise padding of that row (the
published A/B/C/E/F pad some stride-2 blocks by less than ``kernel // 2``).
Every block uses hswish.  Facts come from the FBNet authors' model table.
"""

from __future__ import annotations

from dataclasses import dataclass

from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.models.spec import ArchSpec, BlockSpec

Row = tuple  # (kernel, expansion, channels, repeats, stride, se[, dw_padding])


def _spec(name: str, stem: int, res: int, stages: list[list[Row]]) -> ArchSpec:
    rows = tuple(
        tuple(
            BlockSpec(k, e, c, n, s, bool(se), dw_padding=pad[0] if pad else None)
            for k, e, c, n, s, se, *pad in stage
        )
        for stage in stages
    )
    return ArchSpec(stem_channels=stem, stages=rows, input_size=res, name=name)


@dataclass(frozen=True)
class Variant:
    """A published network: its spec plus the facts its authors reported."""

    name: str
    spec: ArchSpec
    eval_resize: int
    top1: float
    top5: float
    params_m: float  # official convention: conv weights only
    macs_m: float  # official convention: conv MACs + global-pool reads
    weights_url: str

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    @property
    def crop_pct(self) -> float:
        return self.spec.input_size / self.eval_resize


OFFICIAL_TAG = "fb_in1k"  # timm tag of the FBNet authors' ImageNet weights (fbnetv3_b.fb_in1k)
_URL = "https://dl.fbaipublicfiles.com/fbnet/models/20201201/GtOtfw/FBNetV3_{}/model.pth"

# fmt: off
_AB_STAGES = [
    [(3, 1, 16, 2, 1, 0)],
    [(5, 4, 24, 1, 2, 0), (5, 2, 24, 3, 1, 0)],
    [(5, 5, 40, 1, 2, 1), (5, 3, 40, 4, 1, 1)],
    [(5, 5, 72, 1, 2, 0, 1), (3, 3, 72, 4, 1, 0), (3, 5, 120, 1, 1, 1), (5, 3, 120, 5, 1, 1)],
    [(3, 6, 184, 1, 2, 1, 0), (5, 4, 184, 5, 1, 1), (5, 6, 224, 1, 1, 1)],
]

VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("fbnetv3_a", _spec("fbnetv3_a", 16, 224, _AB_STAGES), 242, 79.574, 94.712,
            8.542224, 356.59828, _URL.format("A_f235707940")),
    Variant("fbnetv3_b", _spec("fbnetv3_b", 16, 248, _AB_STAGES), 266, 80.206, 94.944,
            8.542224, 461.550136, _URL.format("B_f233607847")),
    Variant("fbnetv3_c", _spec("fbnetv3_c", 16, 248, [
        [(3, 1, 16, 2, 1, 0)],
        [(5, 5, 24, 1, 2, 0), (3, 3, 24, 4, 1, 0)],
        [(5, 5, 48, 1, 2, 1), (5, 2, 48, 4, 1, 1)],
        [(5, 4, 88, 1, 2, 0, 1), (3, 3, 88, 4, 1, 0), (3, 4, 120, 1, 1, 1), (5, 3, 120, 5, 1, 1)],
        [(5, 5, 216, 1, 2, 1, 1), (5, 5, 216, 5, 1, 1), (5, 6, 216, 1, 1, 1)],
    ]), 272, 80.826, 95.286, 9.907136, 556.969904, _URL.format("C_f234529537")),
    Variant("fbnetv3_d", _spec("fbnetv3_d", 24, 248, [
        [(3, 1, 16, 2, 1, 0)],
        [(3, 5, 24, 1, 2, 0), (3, 2, 24, 5, 1, 0)],
        [(5, 4, 40, 1, 2, 1), (3, 3, 40, 4, 1, 1)],
        [(3, 5, 72, 1, 2, 0), (3, 3, 72, 4, 1, 0), (3, 5, 128, 1, 1, 1), (5, 3, 128, 6, 1, 1)],
        [(3, 6, 208, 1, 2, 1), (5, 5, 208, 5, 1, 1), (5, 6, 240, 1, 1, 1)],
    ]), 277, 81.042, 95.436, 10.237552, 644.420352, _URL.format("D_f231225742")),
    Variant("fbnetv3_e", _spec("fbnetv3_e", 24, 264, [
        [(3, 1, 16, 3, 1, 0)],
        [(5, 4, 24, 1, 2, 0), (5, 2, 24, 4, 1, 0)],
        [(5, 4, 48, 1, 2, 1), (5, 3, 48, 4, 1, 1)],
        [(5, 5, 80, 1, 2, 0, 1), (3, 3, 80, 4, 1, 0), (3, 5, 128, 1, 1, 1), (5, 3, 128, 7, 1, 1)],
        [(3, 6, 216, 1, 2, 1), (5, 5, 216, 5, 1, 1), (5, 6, 240, 1, 1, 1)],
    ]), 291, 81.254, 95.488, 10.699464, 762.046336, _URL.format("E_f230158956")),
    Variant("fbnetv3_f", _spec("fbnetv3_f", 24, 272, [
        [(3, 1, 24, 3, 1, 0)],
        [(5, 4, 32, 1, 2, 0), (5, 2, 32, 4, 1, 0)],
        [(5, 4, 56, 1, 2, 1), (5, 3, 56, 4, 1, 1)],
        [(5, 5, 88, 1, 2, 0), (3, 3, 88, 4, 1, 0), (3, 5, 144, 1, 1, 1), (5, 3, 144, 8, 1, 1)],
        [(3, 6, 248, 1, 2, 1, 0), (5, 5, 248, 6, 1, 1), (5, 6, 272, 1, 1, 1)],
    ]), 296, 82.062, 95.874, 13.803072, 1181.64452, _URL.format("F_f230161092")),
    Variant("fbnetv3_g", _spec("fbnetv3_g", 32, 320, [
        [(3, 1, 24, 3, 1, 0)],
        [(5, 4, 40, 1, 2, 0), (5, 2, 40, 4, 1, 0)],
        [(5, 4, 56, 1, 2, 1), (5, 3, 56, 4, 1, 1)],
        [(5, 5, 104, 1, 2, 0), (3, 3, 104, 4, 1, 0), (3, 5, 160, 1, 1, 1), (5, 3, 160, 8, 1, 1)],
        [(3, 6, 264, 1, 2, 1), (5, 5, 264, 6, 1, 1), (5, 6, 288, 2, 1, 1)],
    ]), 325, 82.794, 96.3, 16.513648, 2129.656384, _URL.format("G_f226438997")),
]}
# fmt: on


def get_variant(name: str) -> Variant:
    """Look up a published variant; the error lists every valid name."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise UnknownVariantError(
            f"unknown FBNetV3 variant {name!r}; valid names: {', '.join(VARIANTS)}"
        ) from None


class UnknownVariantError(UserError, KeyError):
    """A variant name that is not in the zoo (a KeyError for dict-style callers)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""

"""The declarative architecture spec shared by the zoo variants and the search.

An :class:`ArchSpec` is plain data: a stem, five stages of block rows and a
pooling head.  Every consumer (model builder, analytic statistics, export,
search) reads the same object, and :meth:`ArchSpec.blocks` resolves it into
one record per inverted-residual block so that nobody re-derives channel
arithmetic on their own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fbnetv3_zoo.checks import (  # noqa: F401  (the limits are part of this module's interface)
    DEFAULT_NUM_CLASSES,
    MAX_BLOCKS,
    MAX_CHANNELS,
    MAX_EXPANSION,
    MAX_INPUT_SIZE,
    MAX_KERNEL,
    MAX_NAME_CHARS,
    MAX_NUM_CLASSES,
    MAX_PARAMS,
    MAX_REPEATS,
    MAX_ROWS,
    MIN_INPUT_SIZE,
    SPEC_CHECKS,
    SpecError,
    check_input_size,
    check_num_classes,
    is_int,
    is_number,
)
from fbnetv3_zoo.models.formulas import (  # noqa: F401  (part of this module's interface)
    SCALAR,
    ScalarOps,
    make_divisible,
    mid_channels,
    se_channels,
    spatial_size,
    spec_terms,
)
from fbnetv3_zoo.models.result_file import read_result_file

ACTIVATIONS = ("hswish", "relu", "swish", "identity")
STRIDES = (1, 2)


_check = SPEC_CHECKS.that


def _check_act(where: str, value: Any) -> None:
    _check(isinstance(value, str) and value in ACTIVATIONS, where, value, ", ".join(ACTIVATIONS))


@dataclass(frozen=True)
class BlockSpec:
    """A row of ``repeats`` identical inverted-residual blocks; only the first one strides."""

    kernel: int
    expansion: float
    channels: int
    repeats: int = 1
    stride: int = 1
    se: bool = False
    act: str = "hswish"
    dw_padding: int | None = None  # depthwise padding override; None means kernel // 2

    def validate(self, where: str) -> None:
        _check(
            is_int(self.kernel) and 1 <= self.kernel <= MAX_KERNEL and self.kernel % 2 == 1,
            f"{where}.kernel",
            self.kernel,
            f"odd integers in [1, {MAX_KERNEL}] (3, 5, 7, ...)",
        )
        _check(
            is_number(self.expansion) and 1 <= self.expansion <= MAX_EXPANSION,
            f"{where}.expansion",
            self.expansion,
            f"a number >= 1 and <= {MAX_EXPANSION:g}",
        )
        SPEC_CHECKS.integer(self.channels, f"{where}.channels", 1, MAX_CHANNELS)
        SPEC_CHECKS.integer(self.repeats, f"{where}.repeats", 1, MAX_REPEATS)
        _check(
            is_int(self.stride) and self.stride in STRIDES,
            f"{where}.stride",
            self.stride,
            "1 or 2",
        )
        _check(isinstance(self.se, bool), f"{where}.se", self.se, "true or false")
        _check_act(f"{where}.act", self.act)
        if self.dw_padding is not None:
            _check(
                is_int(self.dw_padding) and 0 <= self.dw_padding <= self.kernel // 2,
                f"{where}.dw_padding",
                self.dw_padding,
                f"null or an integer in [0, {self.kernel // 2}]",
            )


@dataclass(frozen=True)
class ResolvedBlock:
    """One concrete IRF block with every derived width spelled out."""

    stage: int
    index: int  # position inside its stage
    in_channels: int
    mid_channels: int
    out_channels: int
    kernel: int
    stride: int
    padding: int
    se_channels: int | None  # None: no squeeze-excite
    act: str
    has_pw: bool  # the 1x1 expansion conv is omitted when the expansion is 1

    @property
    def residual(self) -> bool:
        """A skip connection needs the block to keep both channels and spatial size."""
        return (
            self.stride == 1
            and self.in_channels == self.out_channels
            and self.padding == self.kernel // 2
        )


@dataclass(frozen=True)
class ArchSpec:
    """A whole network: stem conv, stages of IRF block rows, IRPool head."""

    stem_channels: int
    stages: tuple[tuple[BlockSpec, ...], ...]
    input_size: int = 224
    stem_kernel: int = 3
    stem_stride: int = 2
    stem_act: str = "hswish"
    head_expansion: float = 6.0
    feature_width: int = 1984
    head_act: str = "hswish"
    se_ratio: float = 0.25
    name: str = ""
    _blocks: tuple[ResolvedBlock, ...] = field(
        default=(), init=False, repr=False, compare=False, hash=False
    )
    _geometry: tuple = field(default=(), init=False, repr=False, compare=False, hash=False)
    _stats_terms: tuple | None = field(
        default=None, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        stages = tuple(tuple(row for row in stage) for stage in self.stages)
        object.__setattr__(self, "stages", stages)
        self.validate()
        object.__setattr__(self, "_blocks", tuple(self._resolve()))
        geometry = tuple(
            (
                b.in_channels,
                b.mid_channels,
                b.out_channels,
                b.kernel,
                b.stride,
                b.padding,
                b.se_channels or 0,
                b.has_pw,
            )
            for b in self._blocks
        )
        object.__setattr__(self, "_geometry", geometry)
        _check(
            self.final_size() >= 1,
            "input_size",
            self.input_size,
            "a size large enough to leave >= 1 pixel after every stride",
        )
        self._check_size()

    # ----------------------------------------------------------------- checks
    def _check_size(self) -> None:
        """Refuse networks too large to build: each field may be in range, their product not."""
        hin = self._blocks[-1].out_channels
        hmid = make_divisible(hin * self.head_expansion)
        weights = spec_terms(self)[0] + hin * hmid + hmid * self.feature_width
        if weights > MAX_PARAMS:
            raise SpecError(
                f"stages: the network would have {weights:,} weights (classifier not counted); "
                f"allowed: at most {MAX_PARAMS:,} (reduce channels, expansion, repeats or "
                "feature_width)"
            )

    def validate(self) -> None:
        """Type and range of every field, and the network's size, before anything is resolved."""
        SPEC_CHECKS.integer(self.stem_channels, "stem_channels", 1, MAX_CHANNELS)
        check_input_size(self.input_size)
        _check(
            is_int(self.stem_kernel)
            and 1 <= self.stem_kernel <= MAX_KERNEL
            and self.stem_kernel % 2 == 1,
            "stem_kernel",
            self.stem_kernel,
            f"odd integers in [1, {MAX_KERNEL}]",
        )
        _check(
            is_int(self.stem_stride) and self.stem_stride in STRIDES,
            "stem_stride",
            self.stem_stride,
            "1 or 2",
        )
        _check_act("stem_act", self.stem_act)
        _check_act("head_act", self.head_act)
        SPEC_CHECKS.number(self.head_expansion, "head_expansion", 0, MAX_EXPANSION, low_open=True)
        SPEC_CHECKS.integer(self.feature_width, "feature_width", 1, MAX_CHANNELS)
        SPEC_CHECKS.number(self.se_ratio, "se_ratio", 0, 1, low_open=True)
        _check(
            isinstance(self.name, str) and len(self.name) <= MAX_NAME_CHARS,
            "name",
            self.name,
            f"a string of at most {MAX_NAME_CHARS} characters",
        )
        _check(
            0 < len(self.stages) <= MAX_ROWS,
            "stages",
            f"{len(self.stages)} stages",
            f"1 to {MAX_ROWS} stages",
        )
        for i, stage in enumerate(self.stages):
            _check(
                0 < len(stage) <= MAX_ROWS,
                f"stages[{i}]",
                f"{len(stage)} block rows",
                f"1 to {MAX_ROWS} block rows",
            )
            for j, row in enumerate(stage):
                _check(
                    isinstance(row, BlockSpec),
                    f"stages[{i}][{j}]",
                    row,
                    "a BlockSpec (or a mapping of its fields)",
                )
                row.validate(f"stages[{i}][{j}]")
        total = sum(row.repeats for stage in self.stages for row in stage)
        _check(
            total <= MAX_BLOCKS,
            "stages",
            f"{total} blocks in total",
            f"at most {MAX_BLOCKS} blocks",
        )

    def _resolve(self) -> Iterator[ResolvedBlock]:
        cin = self.stem_channels
        for s, stage in enumerate(self.stages):
            index = 0
            for row in stage:
                for r in range(row.repeats):
                    stride = row.stride if r == 0 else 1
                    mid = mid_channels(cin, row.expansion)
                    se = se_channels(mid, row.expansion, self.se_ratio) if row.se else None
                    pad = row.kernel // 2 if row.dw_padding is None else row.dw_padding
                    yield ResolvedBlock(
                        stage=s,
                        index=index,
                        in_channels=cin,
                        mid_channels=mid,
                        out_channels=row.channels,
                        kernel=row.kernel,
                        stride=stride,
                        padding=pad,
                        se_channels=se,
                        act=row.act,
                        has_pw=row.expansion != 1,
                    )
                    cin = row.channels
                    index += 1

    # -------------------------------------------------------------- derived
    def blocks(self) -> tuple[ResolvedBlock, ...]:
        """Every IRF block in forward order, with resolved widths and padding."""
        return self._blocks

    def block_geometry(self) -> tuple[tuple[int, int, int, int, int, int, int, bool], ...]:
        """Per block ``(cin, mid, cout, kernel, stride, padding, se_channels or 0, has_pw)``.

        Plain tuples, computed once: the hot loop of the analytic statistics.
        """
        return self._geometry

    def final_size(self, input_size: int | None = None) -> int:
        """Side of the last feature map for ``input_size`` (default: the spec's own); < 1: vanished."""
        size = self.input_size if input_size is None else input_size
        size = spatial_size(size, self.stem_kernel, self.stem_stride, self.stem_kernel // 2)
        for _, _, _, k, stride, pad, _, _ in self._geometry:
            size = spatial_size(size, k, stride, pad)
            if size < 1:
                return size
        return size

    @property
    def num_features(self) -> int:
        return self.feature_width

    @property
    def head_in_channels(self) -> int:
        return self._blocks[-1].out_channels

    @property
    def head_mid_channels(self) -> int:
        return make_divisible(self.head_in_channels * self.head_expansion)

    def stage_channels(self) -> list[int]:
        return [stage[-1].channels for stage in self.stages]

    def stage_reductions(self) -> list[int]:
        """Cumulative stride at the end of each stage (for feature_info)."""
        out, total = [], self.stem_stride
        for stage in self.stages:
            for row in stage:
                total *= row.stride
            out.append(total)
        return out

    def replace(self, **changes: Any) -> ArchSpec:
        return dataclasses.replace(self, **changes)

    # ---------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        defaults = BlockSpec(kernel=3, expansion=1, channels=1)
        stages = []
        for stage in self.stages:
            rows = []
            for row in stage:
                d = dataclasses.asdict(row)
                # keep rows short: drop optional fields still at their default
                for key in ("repeats", "stride", "se", "act", "dw_padding"):
                    if d[key] == getattr(defaults, key):
                        del d[key]
                rows.append(d)
            stages.append(rows)
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name.startswith("_"):
                continue
            out[f.name] = stages if f.name == "stages" else getattr(self, f.name)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "spec") -> ArchSpec:
        """Build from a plain mapping; unknown or missing keys name ``source`` and the key."""
        if not isinstance(data, Mapping):
            raise SpecError(
                f"{source}: expected a mapping of ArchSpec fields, got {type(data).__name__}"
            )
        allowed = [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise SpecError(f"{source}: unknown key(s) {unknown}; allowed: {', '.join(allowed)}")
        for required in ("stem_channels", "stages"):
            if required not in data:
                raise SpecError(f"{source}: missing required key {required!r}")
        row_fields = [f.name for f in dataclasses.fields(BlockSpec)]
        stages = []
        if not isinstance(data["stages"], list | tuple):
            raise SpecError(
                f"{source}: stages must be a list of stages, got {type(data['stages']).__name__}"
            )
        for i, stage in enumerate(data["stages"]):
            if not isinstance(stage, list | tuple):
                raise SpecError(f"{source}: stages[{i}] must be a list of block rows")
            rows = []
            for j, row in enumerate(stage):
                where = f"{source}: stages[{i}][{j}]"
                if isinstance(row, BlockSpec):
                    rows.append(row)
                    continue
                if not isinstance(row, Mapping):
                    raise SpecError(
                        f"{where}: expected a mapping of {row_fields}, got {type(row).__name__}"
                    )
                bad = sorted(set(row) - set(row_fields))
                if bad:
                    raise SpecError(f"{where}: unknown key(s) {bad}; allowed: {row_fields}")
                try:
                    rows.append(BlockSpec(**row))
                except TypeError as err:
                    raise SpecError(f"{where}: {err}") from None
            stages.append(tuple(rows))
        kwargs = dict(data)
        kwargs["stages"] = tuple(stages)
        try:
            return cls(**kwargs)
        except SpecError as err:
            raise SpecError(f"{source}: {err}") from None

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump({"arch": self.to_dict()}, sort_keys=False, default_flow_style=None)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, path: str | Path) -> ArchSpec:
        """Read a spec from a YAML file; the spec may sit under an ``arch`` key."""
        return load_arch_file(path)[0]


def load_arch_file(path: str | Path) -> tuple[ArchSpec, int | None]:
    """Read an ArchSpec YAML or a search result file: ``(spec, num_classes or None)``.

    A search result holds the class count its statistics were computed with
    (``num_classes:``); every tool uses it, so they all report the same numbers
    for the same file.  A bare spec gives ``None``.
    """
    result = read_result_file(path)
    return ArchSpec.from_dict(result.arch, source=result.source), result.num_classes

import random
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from reference import write_reference_checkpoint  # noqa: E402

from fbnetv3_zoo import ArchSpec, BlockSpec, SpecError  # noqa: E402

# A tiny valid spec (16 px) for training and export tests.
TINY_ARCH = """\
arch:
  stem_channels: 8
  stages:
  - - {kernel: 3, expansion: 1, channels: 8}
  - - {kernel: 3, expansion: 2, channels: 16, stride: 2, se: true}
  input_size: 16
  feature_width: 32
  name: tiny
"""


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """One intra-op thread: on a busy 2-core machine two OpenMP threads spin-wait badly."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def reference_checkpoint(tmp_path_factory):
    """Path of the seeded official-layout checkpoint of a variant (built once per session)."""
    folder = tmp_path_factory.mktemp("reference")
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            cache[name] = write_reference_checkpoint(name, folder / f"{name}.pth")
        return cache[name]

    return get


def random_spec(rng: random.Random, input_size: int = 96) -> ArchSpec:
    """A small random spec of the FBNetV3 space's shape (the search produces such specs)."""
    while True:
        try:
            return _draw_spec(rng, input_size)
        except SpecError:  # too many size reductions for this input: draw again
            continue


def _draw_spec(rng: random.Random, input_size: int) -> ArchSpec:
    stages = []
    for s in range(rng.randint(2, 5)):
        rows = []
        for r in range(rng.randint(1, 3)):
            k = rng.choice([3, 5])
            stride = 2 if r == 0 and s > 0 else 1
            rows.append(
                BlockSpec(
                    kernel=k,
                    expansion=rng.choice([1, 2, 3.5, 4, 6]),
                    channels=rng.choice([8, 12, 16, 24, 32]),
                    repeats=rng.randint(1, 2),
                    stride=stride,
                    se=rng.random() < 0.5,
                    act=rng.choice(["hswish", "relu"]),
                    # like the published A/B/C/E/F: some stride-2 rows pad less
                    dw_padding=rng.choice([None, k // 2 - 1]) if stride == 2 else None,
                )
            )
        stages.append(rows)
    return ArchSpec(
        stem_channels=rng.choice([8, 16]),
        stages=stages,
        input_size=input_size,
        head_expansion=rng.choice([4, 6]),
        feature_width=rng.choice([64, 128]),
    )


@pytest.fixture(scope="session")
def lr_space():
    """The head tests' small space (``lr_task.LR_SPACE``): best lr moves with the optimizer."""
    from fbnetv3_zoo.search.space.definition import parse_space
    from lr_task import LR_SPACE

    return parse_space(LR_SPACE, "tiny test space")


@pytest.fixture(scope="session")
def lr_pretrained(lr_space):
    """An encoder pretrained on ``lr_space`` (seeded; shared by the linear and GP head tests)."""
    from fbnetv3_zoo.search.predictor import encoder

    return encoder.pretrain(lr_space, samples=512, steps=200, num_classes=10, seed=0)

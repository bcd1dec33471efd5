"""jointnas settings small enough for tests (a real search would pretrain and fit far longer)."""

# a few seconds per search on the embedded proxy space
FAST_JOINTNAS = dict(
    pretrain_samples=512,
    pretrain_steps=60,
    fit_steps=40,
    members=2,
    ga_population=16,
    ga_generations=5,
    pool=256,
)
# smaller still, for tests that run several searches in subprocesses
TINY_JOINTNAS = dict(
    FAST_JOINTNAS,
    pretrain_samples=256,
    pretrain_steps=20,
    fit_steps=20,
    members=1,
    ga_population=8,
    ga_generations=2,
    pool=64,
)

"""Run timm's own ``tests/test_models.py`` on every model name this package registers.

The test file comes from the source distribution of the *installed* timm
version, fetched through pip, so the suite always matches the timm we run on.
Cases that only download pretrained weights are deselected (no network in
tests); everything else that names one of our models must pass.  Exit status:
0 when every selected case passed, 1 on any failure, on nothing selected, or
when the source distribution cannot be fetched (never a silent pass).

    python3 tests/timm_suite/run.py            # 67 cases, 4.4 min on a busy 2-core machine
    python3 tests/timm_suite/run.py --sdist-dir /tmp/timmsrc -k fx
"""

from __future__ import annotations

import argparse
import collections
import importlib.metadata
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
NETWORK_ONLY = ("test_model_load_pretrained", "test_model_features_pretrained")


def fetch_sdist(version: str, cache: Path) -> Path:
    """Download ``timm==version``'s sdist into ``cache`` (reused when already there)."""
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"timm-{version}.tar.gz"))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps"]
    cmd += ["--disable-pip-version-check", "-q", f"timm=={version}", "-d", str(cache)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(cache.glob(f"timm-{version}.tar.gz"))
    if done.returncode != 0 or not found:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SystemExit(
            f"FAILED: could not fetch the source distribution of timm=={version} through pip "
            f"(network or index unavailable?); timm's model suite did NOT run.\n  "
            + "\n  ".join(tail)
        )
    return found[0]


def extract_tests(sdist: Path, dest: Path) -> Path:
    """Unpack only ``tests/`` and ``pyproject.toml`` (its pytest markers), not timm's source.

    Leaving timm's source out makes the tests import the installed timm.
    """
    with tarfile.open(sdist) as tar:
        members = [
            m
            for m in tar.getmembers()
            if re.match(r"^[^/]+/(tests/[^/]+\.py|pyproject\.toml)$", m.name)
        ]
        try:
            tar.extractall(dest, members=members, filter="data")
        except TypeError:  # Python without extraction filters; the members are plain files
            tar.extractall(dest, members=members)
    root = next(p for p in dest.iterdir() if p.is_dir())
    if not (root / "tests" / "test_models.py").is_file():
        raise SystemExit(f"FAILED: {sdist} holds no tests/test_models.py")
    return root


def our_names() -> list[str]:
    import timm

    import fbnetv3_zoo

    names = [*fbnetv3_zoo.VARIANTS, "fbnetv3"]
    missing = [n for n in names if n not in timm.list_models()]
    if missing:
        raise SystemExit(f"FAILED: importing fbnetv3_zoo did not register {missing}")
    return names


def summarise(junit: Path, names: list[str]) -> tuple[int, int]:
    """Print passed/failed/skipped per model name; return (passed, failed)."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    failures = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        param = re.search(r"\[(.*)\]", case.get("name", ""))
        parts = (param.group(1) if param else "").split("-")  # e.g. "1-fbnetv3_a.fb_in1k"
        model = next((p for p in parts if p.startswith("fbnetv3")), "?")
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
            failures.append(case.get("name"))
        elif case.find("skipped") is not None:
            outcome = "skipped"
        else:
            outcome = "passed"
        counts[model][outcome] += 1
    print(f"\n{'model':24s} passed failed skipped")
    for model in sorted(counts):
        c = counts[model]
        print(f"{model:24s} {c['passed']:6d} {c['failed']:6d} {c['skipped']:7d}")
    for name in failures:
        print("FAILED", name)
    untested = [n for n in names if not any(m.split(".")[0] == n for m in counts)]
    if untested:
        print("FAILED: no case ran for", ", ".join(untested))
    passed = sum(c["passed"] for c in counts.values())
    return passed, len(failures) + len(untested)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sdist-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "fbnetv3_timm_sdist",
        help="where the timm source distribution is downloaded and reused",
    )
    parser.add_argument("-k", default="", help="extra pytest -k expression (AND-ed)")
    args, extra = parser.parse_known_args(argv)

    version = importlib.metadata.version("timm")
    names = our_names()
    sdist = fetch_sdist(version, args.sdist_dir)
    with tempfile.TemporaryDirectory(prefix="timm_suite_") as tmp:
        root = extract_tests(sdist, Path(tmp))
        junit = Path(tmp) / "junit.xml"
        expr = "fbnetv3 and " + " and ".join(f"not {t}" for t in NETWORK_ONLY)
        if args.k:
            expr += f" and ({args.k})"
        cmd = [sys.executable, "-m", "pytest", "tests/test_models.py", "-p", "fbnetv3_plugin"]
        cmd += [
            "-p",
            "no:cacheprovider",
            "-q",
            "-k",
            expr,
            "-W",
            "ignore::pytest.PytestUnknownMarkWarning",
            f"--junitxml={junit}",
            *extra,
        ]
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
        )
        env.setdefault("OMP_NUM_THREADS", "1")
        print(f"timm {version}: running its tests/test_models.py for {', '.join(names)}")
        start = time.perf_counter()
        code = subprocess.run(cmd, cwd=root, env=env).returncode
        minutes = (time.perf_counter() - start) / 60
        if not junit.is_file():
            print(f"FAILED: pytest exited {code} without a report")
            return 1
        passed, failed = summarise(junit, names)
    print(f"{passed} passed, {failed} failed in {minutes:.1f} min (pytest exit {code})")
    if code != 0 or failed or not passed:
        print("FAILED: timm's model suite does not pass for every registered name")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

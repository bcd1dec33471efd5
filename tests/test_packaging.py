"""Every package folder ships in a wheel: pyproject lists each one (setuptools does not recurse)."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

REPO = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    roots = config["package-dir"]  # dotted name -> folder
    found = set()
    for name, folder in roots.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([name, *rel.parts]))
    assert found <= listed, f"package folders missing from pyproject's packages: {found - listed}"


@pytest.mark.slow
def test_the_sdist_ships_the_license_citation_and_changelog(tmp_path):
    """Built from a copy of what the sdist is made of, so the checkout stays untouched."""
    import shutil
    import subprocess
    import sys
    import tarfile

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "CITATION.cff", "CHANGELOG.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copy(REPO / "MANIFEST.in", src / "MANIFEST.in")
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("fbnetv3_zoo", "recipes", "search"):
        shutil.copytree(REPO / folder, src / folder, ignore=skip)
    code = f"from setuptools import build_meta as b; print(b.build_sdist({str(tmp_path)!r}))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=src, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    name = done.stdout.strip().splitlines()[-1]
    with tarfile.open(tmp_path / name) as sdist:
        shipped = {Path(m).name for m in sdist.getnames() if m.count("/") == 1}
    assert {"LICENSE", "CITATION.cff", "CHANGELOG.md", "README.md"} <= shipped

"""MkDocs hook: the pages that are generated at build time instead of kept by hand.

* ``<!-- generated: cli -->`` becomes the command-line reference (``cli_markdown``);
* ``<!-- generated: zoo -->`` becomes the zoo table ``fbnetv3 models`` prints;
* ``<!-- generated: api PACKAGE -->`` becomes that package's API reference
  (``api_markdown``), rendered by mkdocstrings from the docstrings;
* ``benchmarks/results/`` is served as ``benchmarks/results/`` of the site: every
  results table (and the plots and data files it links) is read from where the
  benchmark scripts write it, and each ``.md`` gets a nav entry under Benchmarks
  (Results files, by file name);
  ``<!-- generated: benchmark-index -->`` lists them with their titles;
* the repository's ``CHANGELOG.md`` is served as ``changelog.md``.
"""

from __future__ import annotations

import re
from pathlib import Path

from api_markdown import api_markdown
from cli_markdown import cli_markdown
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
SERVED = "benchmarks/results"  # where the results land in the site
MARKER = re.compile(r"<!-- generated: (\S+)(?: (\S+))? -->")
MIRROR = ROOT / "build" / "docs_packages"  # mkdocstrings' `paths` in mkdocs.yml


def mirror_installed_layout() -> None:
    """Lay out ``fbnetv3_zoo`` as it installs (search/ and recipes/ inside it) with links.

    Why: pyproject maps ``search/`` and ``recipes/`` into ``fbnetv3_zoo`` (package-dir),
    and griffe, which reads the source for mkdocstrings, looks for subpackages on disk.
    """
    package = MIRROR / "fbnetv3_zoo"
    package.mkdir(parents=True, exist_ok=True)
    links = {p.name: p for p in (ROOT / "fbnetv3_zoo").iterdir() if p.name != "__pycache__"}
    links.update(search=ROOT / "search", recipes=ROOT / "recipes")
    for name, target in links.items():
        link = package / name
        if link.is_symlink() and link.resolve() == target.resolve():
            continue
        if link.is_symlink():
            link.unlink()
        link.symlink_to(target)
    for link in package.iterdir():  # a module removed since the last build
        if link.is_symlink() and not link.exists():
            link.unlink()


# at load time: mkdocstrings expands its `paths` when the plugin is configured, which is
# before a hook's on_config runs
mirror_installed_layout()


def result_pages() -> list[tuple[str, str]]:
    """(title, site path) of every results table, titled by its first heading."""
    pages = []
    for path in sorted(RESULTS.glob("*.md")):
        heading = re.search(r"^#\s+(.+)$", path.read_text(encoding="utf-8"), re.M)
        title = heading.group(1).strip() if heading else path.stem
        pages.append((title, f"{SERVED}/{path.name}"))
    return pages


def _benchmark_index() -> str:
    rows = [
        f"| [{t}]({Path(p).relative_to('benchmarks')}) | `{Path(p).name}` |"
        for t, p in result_pages()
    ]
    return "\n".join(["| results | file |", "|---|---|", *rows])


def _is_results_entry(entry: object) -> bool:
    return isinstance(entry, dict) and "Results files" in entry


def on_files(files: Files, config) -> Files:
    """Serve benchmarks/results/*.md, *.png, *.json under the site's Benchmarks section, and
    CHANGELOG.md as a page."""
    for path in sorted(RESULTS.iterdir()):
        if path.is_file() and path.suffix in (".md", ".png", ".json"):
            files.append(File.generated(config, f"{SERVED}/{path.name}", abs_src_path=str(path)))
    files.append(File.generated(config, "changelog.md", abs_src_path=str(ROOT / "CHANGELOG.md")))
    for section in config["nav"]:  # titles repeat (several search runs), file names do not
        if isinstance(section, dict) and "Benchmarks" in section:
            pages = [{Path(path).stem: path} for _title, path in result_pages()]
            kept = [e for e in section["Benchmarks"] if not _is_results_entry(e)]  # `serve`
            section["Benchmarks"] = [*kept, {"Results files": pages}]
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replace each ``<!-- generated: ... -->`` marker with its generated Markdown."""

    def render(match: re.Match) -> str:
        kind, argument = match.group(1), match.group(2)
        if kind == "cli":
            return cli_markdown()
        if kind == "api" and argument:
            return api_markdown(argument)
        if kind == "benchmark-index":
            return _benchmark_index()
        if kind == "zoo":
            from fbnetv3_zoo.cli.zoo import zoo_table  # what `fbnetv3 models` prints

            return zoo_table()
        raise ValueError(
            f"{page.file.src_uri}: unknown marker {match.group(0)!r} "
            "(accepted: cli, api PACKAGE, benchmark-index, zoo)"
        )

    return MARKER.sub(render, markdown)

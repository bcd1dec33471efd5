import re
from pathlib import Path

from fbnetv3_zoo.zoo_cli import zoo_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_zoo_table_is_the_generated_one():
    text = README.read_text()
    table = re.search(r"<!-- zoo-table -->\n(.*?)\n<!-- /zoo-table -->", text, re.S).group(1)
    assert table == zoo_table()


def test_readme_names_the_ci_test_command():
    ci = (README.parent / ".ci" / "run").read_text()
    assert "python3 -m pytest -q" in README.read_text() and "python3 -m pytest -q" in ci

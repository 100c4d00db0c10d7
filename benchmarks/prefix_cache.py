"""What the frozen-prefix cache saves in partial fine-tuning (``freeze_layers=-k``, no augmentation).

Two arms fit the same partial fine-tuning twice on hymenoptera train (the second fit stands for the
next grid point or fold) and score on val:

- ``cache=True`` (the default): the frozen lower blocks run once per image, in the first fit; every
  epoch, and the second fit, train only the top blocks on the cached block outputs;
- ``cache=False``: the same model, but each fit runs the frozen lower blocks on every image again (once
  a fit: its epochs still train only the top blocks on those outputs).

Run with ``python -m benchmarks.prefix_cache [--full]`` or through ``python -m benchmarks``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ._harness import SHARED_DATA, headline, markdown_table, read_hymenoptera, timed, write_result

SETTINGS = {"full": dict(epochs=5, freeze_layers=-3), "quick": dict(epochs=2, freeze_layers=-3)}


def run(quick: bool, out_dir: Path) -> Path:
    """Time both arms and write ``prefix_cache.md``."""
    from sktransfer import PretrainedImageClassifier, feature_cache

    if not (SHARED_DATA / "hymenoptera").is_dir():
        raise FileNotFoundError(f"{SHARED_DATA / 'hymenoptera'} is absent: this benchmark needs hymenoptera.")
    setting = SETTINGS["quick" if quick else "full"]
    X, y = read_hymenoptera("train")
    X_val, y_val = read_hymenoptera("val")
    rows, scores = [], {}
    for cache in (True, False):
        feature_cache.clear()
        row: dict = {"arm": f"cache={cache}"}
        for fit in ("first fit s", "second fit s"):
            clf = PretrainedImageClassifier(freeze_layers=setting["freeze_layers"], max_epochs=setting["epochs"],
                                            lr=1e-4, head_lr=1e-3, cache=cache, random_state=0)
            with timed(row, fit):
                clf.fit(X, y)
            print(f"[prefix_cache] cache={cache} {fit}: {row[fit]:.1f}", file=sys.stderr, flush=True)
        row["prefix cached"] = clf.prefix_cached_
        row["val accuracy %"] = scores[cache] = 100 * clf.score(X_val, y_val)
        rows.append(row)
    on, off = rows
    body = (
        headline(f"partial fine-tuning {off['first fit s'] / on['first fit s']:.1f}x faster on a first fit and "
                 f"{off['second fit s'] / on['second fit s']:.1f}x on a repeated fit with the frozen-prefix cache")
        + f"\nMode: {'quick' if quick else 'full'}. Hymenoptera train ({len(X)} images) -> val ({len(X_val)}); "
        f"EfficientNet-Lite0 (packaged weights), freeze_layers={setting['freeze_layers']}, "
        f"{setting['epochs']} epochs, lr 1e-4, head_lr 1e-3, batch 32, no augmentation.\n\n"
        + markdown_table(rows)
        + f"\n\nValidation accuracy with and without the cache: {scores[True]:.1f} % and {scores[False]:.1f} % "
        "(the cached fit trains on the same block outputs, so they agree up to float rounding).\n"
    )
    return write_result("prefix_cache", "Partial fine-tuning with the frozen-prefix cache", body, out_dir)


if __name__ == "__main__":
    from ._harness import QUICK_RESULTS, RESULTS

    full = "--full" in sys.argv
    print(run(quick=not full, out_dir=RESULTS if full else QUICK_RESULTS))

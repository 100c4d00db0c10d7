"""The time budget: how closely ``time_limit`` holds on fine-tuning fits of the packaged backbones.

Each fit trains by epochs (the backbone trains, so nothing stops before the limit): MiniLM whole on 2,000
SST-2 phrases for up to 3 epochs, EfficientNet-Lite0's top three blocks on hymenoptera (train) for up to 100:
more than the limit allows (the warm-up is planned over ``max_epochs``, so a limit cuts a plan short rather
than replacing it). The wall clock of the whole ``fit`` call (loading the weights from the in-process
cache, tokenising or decoding, training) against the limit; epochs completed and accuracy on the test rows.
Run with ``python -m benchmarks.time_limit [--full]`` (quick: one 10-second limit on texts).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ._harness import SHARED_DATA, headline, markdown_table, read_hymenoptera, read_sst2, write_result

SETTINGS = {"full": {"text": (30, 60), "image": (30, 60)}, "quick": {"text": (10,), "image": ()}}


def _fit(modality: str, limit: float) -> dict:
    import warnings

    from sktransfer import PretrainedImageClassifier, PretrainedTextClassifier

    if modality == "text":
        (X, y), (X_test, y_test) = read_sst2("train", n=2000), read_sst2("test", n=300)
        clf = PretrainedTextClassifier(freeze_layers="none", contrastive=None, max_epochs=3, time_limit=limit,
                                       random_state=0)
    else:
        (X, y), (X_test, y_test) = read_hymenoptera("train"), read_hymenoptera("val")
        clf = PretrainedImageClassifier(freeze_layers=-3, max_epochs=100, time_limit=limit, random_state=0)
    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    elapsed = time.monotonic() - start
    return {"backbone": "MiniLM, whole" if modality == "text" else "EfficientNet-Lite0, top 3 blocks",
            "time_limit s": limit, "fit s": round(elapsed, 1), "overshoot %": round(100 * (elapsed / limit - 1), 1),
            "epochs completed": clf.n_epochs_, "stopped by the limit": clf.time_limit_reached_,
            "test accuracy %": round(100 * clf.score(X_test, y_test), 1)}


def run(quick: bool, out_dir: Path) -> Path:
    if not (SHARED_DATA / "sst2").is_dir():
        raise FileNotFoundError(f"{SHARED_DATA / 'sst2'} is absent: this benchmark needs the shared data.")
    mode = "quick" if quick else "full"
    rows = []
    for modality, limits in SETTINGS[mode].items():
        for limit in limits:
            rows.append(_fit(modality, limit))
            print(f"[time_limit] {rows[-1]}", file=sys.stderr, flush=True)
    worst = max(row["overshoot %"] for row in rows)
    body = (headline(f"time_limit overshoot at most {worst:+.1f} % over {len(rows)} fits")
            + f"\nMode: {mode}. Settings: {SETTINGS[mode]}.\n\n" + markdown_table(rows) + "\n")
    return write_result("time_limit", "The time budget: time_limit against the wall clock", body, out_dir)


if __name__ == "__main__":
    from ._harness import QUICK_RESULTS, RESULTS

    full = "--full" in sys.argv
    print(run(quick=not full, out_dir=RESULTS if full else QUICK_RESULTS))

"""The frozen default's head with few rows: shrunk against per-feature standardisation, and LogisticRegression.

On the frozen embeddings of every set of the few-shot benchmark (the packaged MiniLM and EfficientNet-Lite0),
k rows per class (5 seeded draws; one fit on the whole pool as well) train three linear heads, scored on
the same test rows:

- ``LogisticRegression()`` on the raw embeddings (the strongest simple baseline);
- the converged head on per-feature standardised embeddings (the default before the shrinkage);
- the converged head on embeddings standardised as ``Head.fit_standardization`` does today (per-feature
  variances shrunk toward their mean by ``n / (n + 300)``).

The converged head with ``C="auto"`` is ``LogisticRegression(C=n_classes / mean ||z||^2)`` on the
standardised ``z`` (see ``sktransfer/_solver.py``), which is what runs here.
Run with ``python -m benchmarks.standardisation [--full]`` or through ``python -m benchmarks``.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

from ._harness import SHARED_DATA, headline, markdown_table, write_result
from .few_shot import IMAGE_SETS, TEXT_SETS, draw, load_set

SETTINGS = {"full": dict(sets=TEXT_SETS + IMAGE_SETS, text_ks=(8, 16, 64), image_ks=(5, 10), draws=5),
            "quick": dict(sets=("trec",), text_ks=(8,), image_ks=(5,), draws=2)}
ALL = "all"
MAX_POOL = 10000


def _scores(X, y, X_test, y_test) -> dict[str, float]:
    import torch
    from sklearn.linear_model import LogisticRegression

    from sktransfer._heads import Head

    out = {"LogisticRegression()": LogisticRegression(max_iter=5000).fit(X, y).score(X_test, y_test)}
    for name, shrink in (("per-feature standardisation", False), ("shrunk standardisation (default)", True)):
        head = Head(X.shape[1], 2)
        head.fit_standardization(torch.as_tensor(X), shrink=shrink)
        mean, scale = head.mean.numpy(), head.scale.numpy()
        Z, Z_test = (X - mean) / scale, (X_test - mean) / scale
        C = len(np.unique(y)) / float((Z ** 2).sum(1).mean())
        out[name] = LogisticRegression(C=C, max_iter=5000).fit(Z, y).score(Z_test, y_test)
    return out


def run(quick: bool, out_dir: Path) -> Path:
    """Embed each set once, fit the three heads on every draw and write ``standardisation.md``."""
    from sktransfer import PretrainedImageEmbedder, PretrainedTextEmbedder

    if not (SHARED_DATA / "trec").is_dir():
        raise FileNotFoundError(f"{SHARED_DATA / 'trec'} is absent: this benchmark needs the shared data.")
    setting = SETTINGS["quick" if quick else "full"]
    rows = []
    for name in setting["sets"]:
        X_pool, y_pool, X_test, y_test = load_set(name)
        if len(X_pool) > MAX_POOL:  # SST-2: a seeded sample keeps the embedding pass short
            keep = np.sort(np.random.default_rng(0).permutation(len(X_pool))[:MAX_POOL])
            X_pool, y_pool = [X_pool[i] for i in keep], y_pool[keep]
        embedder = PretrainedTextEmbedder() if name in TEXT_SETS else PretrainedImageEmbedder()
        E_pool, E_test = embedder.fit_transform(X_pool), embedder.transform(X_test)
        ks = setting["text_ks"] if name in TEXT_SETS else setting["image_ks"]
        for k in (*ks, ALL):
            draws = [np.arange(len(y_pool))] if k == ALL else [draw(y_pool, k, d) for d in range(setting["draws"])]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scores = [_scores(E_pool[i], y_pool[i], E_test, y_test) for i in draws]
            row = {"set": name, "k per class": k, "draws": len(draws)}
            for method in scores[0]:
                row[f"{method} %"] = round(100 * float(np.mean([s[method] for s in scores])), 1)
            rows.append(row)
            print(f"[standardisation] {row}", file=sys.stderr, flush=True)
    few = [r for r in rows if r["k per class"] != ALL]
    gap = lambda key: [r[key] - r["LogisticRegression() %"] for r in few]  # noqa: E731
    shrunk, plain = gap("shrunk standardisation (default) %"), gap("per-feature standardisation %")
    body = (
        headline(f"few rows per class, default head minus LogisticRegression(): shrunk {min(shrunk):+.1f} to "
                 f"{max(shrunk):+.1f} points (mean {np.mean(shrunk):+.2f}); per-feature {min(plain):+.1f} to "
                 f"{max(plain):+.1f} (mean {np.mean(plain):+.2f})")
        + f"\nMode: {'quick' if quick else 'full'}. Settings: {setting}; test rows as in the few-shot benchmark "
        "(all of them here); pools of more than 10,000 rows (SST-2) are a seeded 10,000-row sample.\n\n"
        + markdown_table(rows) + "\n"
    )
    return write_result("standardisation", "The frozen default's head with few rows per class", body, out_dir)


if __name__ == "__main__":
    from ._harness import QUICK_RESULTS, RESULTS

    full = "--full" in sys.argv
    print(run(quick=not full, out_dir=RESULTS if full else QUICK_RESULTS))

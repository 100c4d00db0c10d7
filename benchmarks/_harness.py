"""What every benchmark shares: where the data is, timing, peak memory, and the result file format."""

from __future__ import annotations

import datetime
import platform
import re
import resource
import sys
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
QUICK_RESULTS = ROOT / "benchmarks" / "results-quick"  # smoke tests: never the committed full results

_PACKAGES = ("sktransfer", "torch", "torchvision", "timm", "transformers", "skorch", "scikit-learn", "numpy")


def device_name() -> str:
    """The accelerator's name, or the CPU's."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def environment_markdown() -> str:
    """A markdown block naming the machine, versions and date of a run."""
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in _PACKAGES if _installed(p))
    return (
        f"- date: {datetime.datetime.now().isoformat(timespec='minutes')}\n"
        f"- machine: {platform.node()} / {platform.platform()} / Python {sys.version.split()[0]}\n"
        f"- device: {device_name()}\n"
        f"- versions: {versions}\n"
    )


def _installed(package: str) -> bool:
    try:
        metadata.version(package)
        return True
    except metadata.PackageNotFoundError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def timed(record: dict, key: str = "seconds"):
    """Store the wall time of the ``with`` block in ``record[key]``."""
    start = time.perf_counter()
    yield record
    record[key] = time.perf_counter() - start


def markdown_table(rows: list[dict]) -> str:
    """Rows of dicts as a markdown table (floats to 4 significant digits)."""
    if not rows:
        return ""
    columns = list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def paired_comparison(data: str, y_true, pred_default, pred_lr) -> dict:
    """Where the default classifier's and LogisticRegression's predictions of the same items differ:
    counts and McNemar's exact p-value.

    The p-value is the two-sided binomial test of the items only one of them gets right: a small one
    says the two accuracies differ by more than chance on these items.
    """
    import numpy as np
    from scipy.stats import binomtest

    right_a, right_b = (np.asarray(pred) == np.asarray(y_true) for pred in (pred_default, pred_lr))
    a_only, b_only = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    return {"data": data, "n": len(right_a), "default %": 100 * right_a.mean(), "LR %": 100 * right_b.mean(),
            "default right, LR wrong": a_only, "LR right, default wrong": b_only,
            "exact McNemar p": binomtest(a_only, a_only + b_only).pvalue if a_only + b_only else 1.0}


def write_result(name: str, title: str, body: str, out_dir: Path = RESULTS) -> Path:
    """Write ``out_dir/<name>.md`` with a title, the environment block and ``body``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.md"
    path.write_text(f"# {title}\n\n{environment_markdown()}\n{body}\n")
    return path


def committed_run(name: str) -> tuple[str, str]:
    """The committed ``results/<name>.md`` and the date of the run that wrote it."""
    text = (RESULTS / f"{name}.md").read_text()
    return text, re.search(r"^- date: (\S+)", text, re.M).group(1)


def carried_text(text: str, label: str, date: str, template: str = r"^\| {} \|.*$") -> str | None:
    """The part of ``text`` that ``template`` matches with ``label`` in place of ``{}`` (by default the table
    row whose first cell is ``label``), marked as measured by the run of ``date`` (a part already carried
    keeps its own mark); None when there is none."""
    pattern = template.replace("{}", rf"{re.escape(label)}( \(from the run of \S+\))?")
    match = re.search(pattern, text, re.M)
    if match is None:
        return None
    return match.group(0) if match.group(1) else match.group(0).replace(label, f"{label} (from the run of {date})", 1)


# --- shared by accuracy, learning_curve and the runner (``python -m benchmarks``) ---

HEADLINE = "Headline:"
TINY_ENV = "SKTRANSFER_BENCH_TINY"


def headline(text: str) -> str:
    """The one line a result file may carry for ``summary.md`` (put it in the ``body`` of ``write_result``)."""
    return f"{HEADLINE} {text}\n"


def read_headline(path: Path) -> str:
    """The text after ``Headline:`` in a result file, or "" when it has none."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(HEADLINE):
            return line[len(HEADLINE):].strip()
    return ""


def tiny() -> bool:
    """Whether to use tiny random backbones and synthetic data (set by ``--tiny``, for the test suite)."""
    import os

    return os.environ.get(TINY_ENV, "") not in ("", "0")


def read_sst2(split: str, n: int | None = None, seed: int = 0) -> tuple[list[str], list[int]]:
    """SST-2 ``split`` ("train", "dev", "test") as (texts, labels); ``n`` draws a seeded subsample."""
    import csv

    import numpy as np

    with open(SHARED_DATA / "sst2" / f"{split}.tsv", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    if n is not None and n < len(rows):
        rows = [rows[i] for i in np.random.default_rng(seed).choice(len(rows), n, replace=False)]
    return [r[0] for r in rows], [int(r[1]) for r in rows]


def read_hymenoptera(split: str) -> tuple[list[str], list[str]]:
    """Hymenoptera ``split`` ("train" or "val") as (image paths, labels)."""
    from sktransfer import load_image_folder

    return load_image_folder(SHARED_DATA / "hymenoptera" / split)


def synthetic_images(n: int, seed: int = 0):
    """``n`` small uint8 images in two classes told apart by brightness (tiny mode)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = np.array(["dark", "light"] * (n // 2))
    X = np.where((y == "light")[:, None, None, None], 150, 0) + rng.integers(0, 100, size=(len(y), 32, 32, 3))
    return X.astype(np.uint8), y.tolist()


def synthetic_texts(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """``n`` short texts whose label is the sentiment of their words (tiny mode)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    words = (["good", "great", "love", "nice"], ["bad", "awful", "hate", "poor"])
    y = [i % 2 for i in range(n)]
    X = [" ".join(["the", "film", *rng.choice(words[label], 2)]) for label in y]
    return X, y


def tiny_text_backbone() -> str:
    """A 2-layer random BERT saved in a temporary directory (built once per process)."""
    global _TINY_BERT
    if _TINY_BERT is None:
        import tempfile

        import torch
        from transformers import BertConfig, BertModel, BertTokenizerFast

        words = "the film good great love nice bad awful hate poor".split()
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
        path = tempfile.mkdtemp(prefix="sktransfer_tiny_bert_")
        config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=37, max_position_embeddings=64)
        torch.manual_seed(0)
        BertModel(config).save_pretrained(path)
        BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True).save_pretrained(path)
        _TINY_BERT = path
    return _TINY_BERT


_TINY_BERT: str | None = None


def run_isolated(target: str, **kwargs) -> dict:
    """Call ``"module:function"(**kwargs)`` in a fresh Python process and return its dict result.

    The function must return a JSON-serialisable dict; ``peak_rss_mb`` (of that process) and
    ``process_seconds`` are added. Fresh processes make peak memory and wall time per recipe
    comparable. In tiny mode the call runs in this process (start-up would dominate).
    """
    import json
    import os
    import subprocess

    if tiny():
        module, function = target.split(":")
        start = time.perf_counter()
        result = getattr(__import__(module, fromlist=[function]), function)(**kwargs)
        return {**result, "peak_rss_mb": peak_rss_mb(), "process_seconds": time.perf_counter() - start}
    code = (
        "import json, sys, time; start = time.perf_counter()\n"
        "from benchmarks._harness import peak_rss_mb\n"
        f"module, function = {target!r}.split(':')\n"
        "result = getattr(__import__(module, fromlist=[function]), function)(**json.loads(sys.argv[1]))\n"
        "result.update(peak_rss_mb=peak_rss_mb(), process_seconds=time.perf_counter() - start)\n"
        "print('@@RESULT@@' + json.dumps(result))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    marked = [line for line in proc.stdout.splitlines() if line.startswith("@@RESULT@@")]
    if proc.returncode != 0 or not marked:
        raise RuntimeError(f"{target} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(marked[-1][len("@@RESULT@@"):])

"""sktransfer benchmarks: accuracy and cost against the baselines users would otherwise pick.

Run ``python -m benchmarks --quick`` (minutes on a laptop CPU) or ``--full``. Each benchmark module
exposes ``run(quick: bool, out_dir: pathlib.Path) -> pathlib.Path`` and writes ``<name>.md`` there.
"""

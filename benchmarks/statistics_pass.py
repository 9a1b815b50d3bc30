"""Time the files' statistics pass alone, one fresh process per call, for side-by-side runs.

``python benchmarks/statistics_pass.py DIRECTORY [--sums compiled|bincount]`` reduces the
Parquet files of the general scale case (``benchmarks/scale.py --cases general`` writes
them) to per-group sums with ``group_statistics_from_files`` and prints the seconds;
``--sums bincount`` turns off the compiled pass over the rows
(``lmm_pymc.design.COMPILED_SUMS_FROM``), so ``farm-bench --vs`` times one against the other::

    farm-bench -n 3 --timeout 600 \\
        --vs "python benchmarks/statistics_pass.py DIR --sums bincount" \\
        -- python benchmarks/statistics_pass.py DIR

``--workers 1 2 --repeats 3`` times the pass on ``dask.distributed`` clusters of 1 and of
2 single-threaded worker processes instead, in turn (1, 2, 1, 2, ...; each cluster started,
and the package imported on its workers, before the clock starts), and prints the medians
and their ratio: how the pass scales with workers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scale_files_cases import GENERAL_FORMULA  # noqa: E402


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory")
    parser.add_argument("--formula", default=GENERAL_FORMULA)
    parser.add_argument("--sums", choices=("compiled", "bincount"), default="compiled")
    parser.add_argument("--workers", type=int, nargs="*", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.workers:
        return _on_clusters(args.directory, args.formula, args.workers, args.repeats)
    import lmm_pymc.design as design
    from lmm_pymc.bigdata import group_statistics_from_files

    if args.sums == "bincount":
        design.COMPILED_SUMS_FROM = sys.maxsize
    start = time.perf_counter()
    stats = group_statistics_from_files(args.directory, args.formula)
    seconds = time.perf_counter() - start
    print(f"{args.sums}: {seconds:.2f} s, {len(stats.group_labels)} groups")
    return stats


def _on_clusters(directory: str, formula: str, workers: list[int], repeats: int) -> dict:
    """Median seconds of the pass per cluster size, the sizes alternating."""
    import statistics

    from benchmarks.scale_files_cases import statistics_on_cluster

    seconds: dict[int, list[float]] = {w: [] for w in workers}
    for _ in range(repeats):
        for w in workers:
            seconds[w].append(statistics_on_cluster(Path(directory), formula, w))
    medians = {w: statistics.median(s) for w, s in seconds.items()}
    for w in workers:
        runs = ", ".join(f"{s:.1f}" for s in seconds[w])
        print(f"{w} worker(s): median {medians[w]:.2f} s ({runs})")
    first, last = workers[0], workers[-1]
    print(f"speed-up {first} -> {last} workers: x{medians[first] / medians[last]:.2f}")
    return medians


if __name__ == "__main__":
    main()

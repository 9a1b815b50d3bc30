"""Time the files' statistics pass alone, one fresh process per call, for side-by-side runs.

``python benchmarks/statistics_pass.py DIRECTORY [--sums compiled|bincount]`` reduces the
Parquet files of the general scale case (``benchmarks/scale.py --cases general`` writes
them) to per-group sums with ``group_statistics_from_files`` and prints the seconds;
``--sums bincount`` turns off the compiled pass over the rows
(``lmm_pymc.design.COMPILED_SUMS_FROM``), so ``farm-bench --vs`` times one against the other::

    farm-bench -n 3 --timeout 600 \\
        --vs "python benchmarks/statistics_pass.py DIR --sums bincount" \\
        -- python benchmarks/statistics_pass.py DIR
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
    args = parser.parse_args(argv)
    import lmm_pymc.design as design
    from lmm_pymc.bigdata import group_statistics_from_files

    if args.sums == "bincount":
        design.COMPILED_SUMS_FROM = sys.maxsize
    start = time.perf_counter()
    stats = group_statistics_from_files(args.directory, args.formula)
    seconds = time.perf_counter() - start
    print(f"{args.sums}: {seconds:.2f} s, {len(stats.group_labels)} groups")
    return stats


if __name__ == "__main__":
    main()

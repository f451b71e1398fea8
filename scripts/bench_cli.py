"""Start-up time of `patchswarm --help` (median of N runs; target <= 0.5 s on an idle machine).

    python scripts/bench_cli.py [--runs 5] [--against /work/main]

With --against, the same measurement for another checkout, interleaved run by run, and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def once(root: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(root), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from patchswarm.cli import app; app()", "--help"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--against", type=Path, default=None)
    args = parser.parse_args()
    ours, theirs = [], []
    for _ in range(args.runs):
        ours.append(once(ROOT))
        if args.against:
            theirs.append(once(args.against))
    print(f"patchswarm --help ({ROOT}): median {statistics.median(ours):.3f}s of {args.runs}")
    if args.against:
        print(f"patchswarm --help ({args.against}): median {statistics.median(theirs):.3f}s of {args.runs}")
        print(f"ratio: {statistics.median(ours) / statistics.median(theirs):.2f}")


if __name__ == "__main__":
    main()

"""Error rates of the break flags on ledgers with a known truth, for groups of 8, 12 and 40 runs per level.

Run by hand: ``python tests/benchmarks/bench_flag_error_rates.py [--ledgers N] [--groups 8 12 40]``. For each group
size it prints the share of null ledgers (``tests.analyze.synthetic.null_ledger``: noise, flat, additive — every
level has the same relation, so any flag other than ``too_small`` is false) with a false flag, and the share of
planted ledgers (``planted_ledger``: reversal, Simpson, weakening, weakening inside the reference level) in which the
planted flag is found. Targets: null ≤ 10 % at every size; planted ≥ 95 % at ≥ 40 runs per level (with 8 or 12 runs
per level the planted effects are below what the data can show, and their rates are printed for information).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.analyze.stats.test_flag_error_rates import detection_share, null_share  # noqa: E402
from tests.analyze.synthetic import NULL_KINDS, PLANTED_KINDS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ledgers", type=int, default=300, help="ledgers per kind and group size (default 300)")
    parser.add_argument("--groups", type=int, nargs="+", default=[8, 12, 40], help="runs per level (multiples of 4)")
    args = parser.parse_args()
    for group in args.groups:
        if group % 4:
            parser.error(f"--groups {group}: each level of the 2 × 2 × 2 grid holds 4 configurations; use a multiple of 4")
        n_seeds = group // 4
        start = time.perf_counter()
        for kind in NULL_KINDS:
            rate = null_share(kind, range(args.ledgers), n_seeds)
            print(f"groups of {group:3d}  null    {kind:<20s} {rate:6.1%} of {args.ledgers} ledgers with a false flag "
                  f"({'PASS' if rate <= 0.10 else 'FAIL'} <= 10 %)", flush=True)
        for kind in PLANTED_KINDS:
            rate = detection_share(kind, range(1000, 1000 + args.ledgers), n_seeds)
            verdict = ("PASS" if rate >= 0.95 else "FAIL") + " >= 95 %" if group >= 40 else "for information"
            print(f"groups of {group:3d}  planted {kind:<20s} {rate:6.1%} of {args.ledgers} ledgers found ({verdict})",
                  flush=True)
        print(f"groups of {group:3d}  {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()

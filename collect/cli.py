"""``python -m collect``: expand a sweep spec, train and measure every configuration, log to MLflow."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from collect.config import SpecError

EPILOG = """examples:
  python -m collect                          # the built-in 'quick' sweep on embedded MNIST
  python -m collect --list                   # built-in sweeps and their scales
  python -m collect --sweep volume --scale cpu --dry-run
  python -m collect --config my_sweep.toml --seeds 0,1,2 --tracking-uri http://127.0.0.1:5000
  python -m collect --workers 4 --retries 1      # 4 runs at a time in local processes
  python -m collect --executor dask --scheduler tcp://HOST:8786 --tracking-uri http://HOST:5000
"""


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' or '0-4' (inclusive)."""
    try:
        if "-" in text and "," not in text:
            lo, hi = text.split("-")
            return list(range(int(lo), int(hi) + 1))
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds {text!r}: give a comma list like 0,1,2 or a range like 0-4") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m collect", description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--sweep", default=None, help="built-in sweep name (default: quick)")
    src.add_argument("--config", type=Path, default=None, help="path to a sweep spec TOML file")
    p.add_argument("--scale", default=None, help="named scale of the spec (smoke, cpu, paper; default: the spec's default)")
    p.add_argument("--list", action="store_true", help="list the built-in sweeps and exit")
    p.add_argument("--dry-run", action="store_true", help="print the expanded runs and exit without training")
    p.add_argument("--max-runs", type=int, default=None, help="run at most this many configurations (in spec order)")
    p.add_argument("--seeds", type=parse_seeds, default=None, help="override the spec's seeds: 0,1,2 or 0-4")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    p.add_argument("--tracking-uri", default=None, help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///data/mlflow.db)")
    p.add_argument("--experiment", default=None, help="MLflow experiment name (default: the sweep's name)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="local: parallel processes on this machine (default); dask: a Dask cluster (--scheduler, else a LocalCluster)")
    p.add_argument("--workers", type=int, default=None,
                   help="runs in parallel: local processes, or LocalCluster workers with --executor dask (default: the number of cores)")
    p.add_argument("--scheduler", default=None, help="address of a running Dask scheduler, e.g. tcp://HOST:8786 (with --executor dask)")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error instead of one line")
    p.add_argument("--retries", type=int, default=2,
                   help="re-runs of a configuration whose worker died or whose store write failed, before it is recorded FAILED (default 2)")
    p.add_argument("--stack", nargs="?", const="on", default="auto", choices=("auto", "on", "off"),
                   help="train runs that share a shape (differing in seed, lr, weight decay, momentum, dropout, init scale) "
                        "together as one stacked model (collect.train_stacked), then measure and log them in --workers processes; "
                        "the others run as usual. auto (default): only the groups a cost model says pay (collect.stack_cost: "
                        ">= 4 runs, small steps, enough training), never with --executor dask; on (or bare --stack): every "
                        "supported group of >= 2; off: none. The choice is printed. A run stacking supports (cross-entropy) trains "
                        "one at a time as a stack of one (collect.train_stacked.train_alone), to the same weights as in any stack")
    p.add_argument("--probe", action="store_true",
                   help="convergence probe: train one seed of every grid cell with a generous cap, no measures and no MLflow "
                        "runs; print which cells reach the target and when, the axis levels that cannot, and a suggested cap "
                        "(collect.probe); the result is saved beside the store and shown by --dry-run")
    p.add_argument("--probe-cap-epochs", type=int, default=None,
                   help="epoch cap of --probe (default: 3 x the largest run cap in epochs, a step cap converted at ceil((|S| + |A|) / B) steps an epoch)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done (or some runs finished), 1 nothing could finish or an unexpected error, 2 a bad spec, flag
    or store (one line naming it and the fix), 130 Ctrl-C. Tracebacks only with ``--debug``."""
    args = build_parser().parse_args(argv)
    try:
        return _main(args, argv)
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs are kept; re-run the same command to resume the rest", file=sys.stderr)
        return 130
    except Exception as exc:
        from collect.store_check import StoreError, resolve_tracking_uri, write_failure_error

        if args.debug:
            raise
        if not isinstance(exc, StoreError):  # a full disk (or another write the store refused), wherever it surfaced
            exc = write_failure_error(resolve_tracking_uri(args.tracking_uri), f"{type(exc).__name__}: {exc}") or exc
        executors = sys.modules.get("collect.executors")  # not imported just to classify an error: it loads torch
        known = isinstance(exc, (SpecError, StoreError)) or (executors is not None and isinstance(exc, executors.ExecutorError))
        message = str(exc) if known else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, SpecError) and args.config is not None and str(args.config) not in message:
            message = f"{args.config}: {message}"  # every spec error names the spec file
        print(f"error: {message.strip().splitlines()[0] if message.strip() else type(exc).__name__}", file=sys.stderr)
        if not known:
            print("(re-run with --debug for the traceback)", file=sys.stderr)
        return 2 if known else 1


def _main(args: argparse.Namespace, argv: list[str] | None) -> int:
    uri = None
    if not (args.list or args.dry_run or args.probe):  # first, before torch is imported: an unusable store fails in seconds
        from collect.store_check import check_store, resolve_tracking_uri

        uri = resolve_tracking_uri(args.tracking_uri)
        check_store(uri)
        if args.executor == "local":  # the workers' fork server imports torch and MLflow beside this start-up
            from collect.worker_context import start_worker_server

            start_worker_server(args.workers)
    if args.experiment is not None and not args.experiment.strip():
        raise SpecError("--experiment '': give the MLflow experiment a non-empty name (or leave the flag out: the sweep's name)")
    from collect.preflight import check_runs
    from collect.sweep import expand, find_sweep, list_sweeps, load_spec, plan_warnings

    if args.list:
        for spec in list_sweeps():
            scales = ", ".join(f"{s} (default)" if s == spec.default_scale else s for s in spec.scales) or "-"
            print(f"{spec.name:<18} scales: {scales:<34} {spec.description.splitlines()[0] if spec.description else ''}")
        return 0
    spec = load_spec(args.config) if args.config else load_spec(find_sweep(args.sweep or "quick"))
    runs = expand(spec, args.scale, args.seeds)
    if args.max_runs is not None:
        runs = runs[: args.max_runs]
    if args.probe or args.dry_run:
        from collect.probe import probe_path
        from collect.store_check import resolve_tracking_uri

        scale = args.scale or str(spec.default_scale or "default")
        probe_file = probe_path(resolve_tracking_uri(args.tracking_uri), spec.name, scale)
    if args.probe:
        return _probe(args, spec.name, scale, runs, probe_file)
    if args.dry_run:
        warnings = plan_warnings(spec, args.scale, args.seeds) + check_runs(runs)
        for i, r in enumerate(runs):
            print(f"{i:4d}  {r.config_hash}  seed={r.config.seed}  {r.intervention}")
        for warning in warnings:
            print(warning, file=sys.stderr)
        print(f"{len(runs)} runs in sweep '{spec.name}'" + (f" (scale {args.scale})" if args.scale else "") + "; checks passed")
        from collect.probe import dry_run_lines

        for line in dry_run_lines(probe_file, runs):
            print(line)
        return 0

    from collect.executors import open_executor
    from collect.runner import run_sweep
    for warning in plan_warnings(spec, args.scale, args.seeds) + check_runs(runs):
        print(warning, file=sys.stderr)
    command = "python -m collect " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    from collect.stack_cost import choose, why_not

    stacking = choose(runs, args.stack, args.executor)
    if stacking.stacked:
        print(stacking.line(), flush=True)
    with open_executor(args.executor, workers=args.workers, scheduler=args.scheduler, retries=args.retries) as (executor, threads):
        if stacking.stacked:  # the chosen stacks train together, the rest go to `executor`
            from collect.stack_executor import stacked_executor
            from collect.worker_context import local_workers

            # measuring and logging of stacked runs: in --workers local processes (with dask: in this process)
            workers = local_workers(args.workers) if args.executor == "local" else 1
            executor = stacked_executor(executor, workers=workers, retries=args.retries,
                                        pays=why_not if args.stack == "auto" else None)
        summary = run_sweep(
            runs,
            sweep=spec.name,
            tracking_uri=uri,
            experiment=args.experiment,
            device=args.device,
            executor=executor,
            parent_tags={"command": command, "scale": args.scale or str(spec.default_scale or ""), "spec": spec.source,
                         "executor": args.executor},
            progress=not args.no_progress,
            torch_threads=threads,
            checked=True,  # check_store and check_runs ran above, once
        )
    if not stacking.stacked and args.stack != "off":
        print(stacking.line())
    if summary.parent_run_id is None:
        print(f"sweep '{spec.name}': 0 finished, 0 failed, {summary.skipped} already done (of {summary.planned}): nothing to "
              f"do, no parent run was logged -> {uri} (experiment id {summary.experiment_id})")
        return 0
    print(
        f"sweep '{spec.name}': {summary.finished} finished, {summary.failed} failed, {summary.skipped} already done, "
        f"{summary.elsewhere} taken by another invocation (of {summary.planned}) in {summary.seconds:.0f}s -> {uri} "
        f"(experiment id {summary.experiment_id})"
    )
    from collect.levels import target_summary

    at_target = target_summary(runs, summary.outcomes)
    if at_target is not None:
        print(at_target.line())
    for o in summary.outcomes:
        if o.status == "FAILED":
            print(f"  failed {o.run_id}: {o.reason.splitlines()[0] if o.reason else ''}")
    if summary.parent_status != "FINISHED":
        print(f"  note: another invocation closed this invocation's parent run {summary.parent_run_id} as "
              f"{summary.parent_status} while it was stopped; that status stays")
    # A diverged run is a recorded result, not a crash: fail the command only when nothing could finish, here or in
    # another invocation.
    return 1 if summary.outcomes and summary.finished == 0 and summary.elsewhere == 0 else 0


def _probe(args: argparse.Namespace, sweep: str, scale: str, runs: list, path: Path) -> int:
    """``--probe``: train one seed per cell (``collect.probe``), print the findings, save them to ``path``."""
    from collect.preflight import check_runs
    from collect.probe import report_lines, run_probe

    for warning in check_runs(runs):
        print(warning, file=sys.stderr)
    result = run_probe(sweep, scale, runs, cap_epochs=args.probe_cap_epochs, stack=args.stack == "on", device=args.device,
                       log=lambda line: print(line, flush=True))
    for line in report_lines(result):
        print(line)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(result.to_json())
    print(f"probe result written to {path}")
    return 0

"""The scenarios of `scripts/bench --scenario NAME` (each on a fresh cluster or in
process): load (dev/loadbench.py), scale (dev/scalebench.py), pytasks (dev/pybench.py),
apply (dev/applybench.py). Each prints its figures and one `BENCH_JSON ` line."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="raftsched-bench-") as tmp:
        if args.scenario == "load":
            from raftsched.dev import loadbench

            p = loadbench.Params(jobs=100_000 if args.jobs is None else args.jobs, batch=args.batch,
                                 watches=args.watches,
                                 cron_calls=args.cron_calls, cron_seconds=args.cron_seconds,
                                 node_pythonpath=args.nodes_from)
            print(f"== load scenario: {p}")
            f = loadbench.run(Path(tmp), p)
            print(loadbench.report(f))
            print("BENCH_JSON " + json.dumps(f.__dict__))
            return 0 if not (f.elections or f.node_down or f.long_job_restarts) else 1
        if args.scenario == "apply":
            from raftsched.dev import applybench

            ra = applybench.run(20_000 if args.jobs is None else args.jobs)
            print(applybench.report(ra))
            print("BENCH_JSON " + json.dumps(ra))
            return 0
        if args.scenario == "pytasks":
            from raftsched.dev import pybench

            f = pybench.run(Path(tmp), 5000 if args.jobs is None else args.jobs, args.python_workers,
                            profile_dir=Path(args.profile) if args.profile else None, profile_gil=args.gil,
                            baselines=not args.no_baselines)
            print(pybench.report(f))
            print("BENCH_JSON " + json.dumps(pybench.as_dict(f)))
            return 0 if not f.failed else 1
        from raftsched.dev import scalebench

        r = scalebench.run(Path(tmp), 1_000_000 if args.jobs is None else args.jobs)
        print(scalebench.report(r))
        print("BENCH_JSON " + json.dumps(r))
        return 0

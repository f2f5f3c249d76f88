"""`quantbench operator`: run the QuantBenchmark operator (kopf) in this process."""

from __future__ import annotations

import argparse
import logging
import os


def run(args: argparse.Namespace) -> int:
    if args.kubeconfig:
        # Before kopf and the kubernetes client are imported: they read $KUBECONFIG at import time.
        os.environ["KUBECONFIG"] = args.kubeconfig
    import kopf

    import quantbench.handlers  # noqa: F401  (registers the handlers)
    from quantbench.settings import OperatorSettings

    OperatorSettings.from_env()  # fail early, naming the variable, on bad settings
    kopf.configure(verbose=args.verbose, log_prefix=False)
    logging.getLogger("kopf.objects").setLevel(logging.INFO if args.verbose else logging.WARNING)
    kopf.run(
        standalone=True,
        clusterwide=args.all_namespaces,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness,
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "operator", help="run the QuantBenchmark operator (watches QuantBenchmarks, runs them)"
    )
    scope = p.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "--namespace", "-n", action="append", metavar="NS", help="watch this namespace (repeatable)"
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    p.add_argument(
        "--liveness", metavar="URL", help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz"
    )
    p.add_argument("--verbose", "-v", action="store_true", help="log every handler call")
    p.set_defaults(func=run)

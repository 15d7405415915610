"""Command line: ``ml-dash`` (also ``python -m ml_dash``)."""

import argparse
import sys


def _demo(args):
    from .demo import run_demo
    run_demo(steps=args.steps, dash_root=args.dash_root)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="ml-dash", description="Local experiment-metrics store.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="log a synthetic training run and read it back")
    demo.add_argument("--steps", type=int, default=100_000, help="training steps (default 100,000)")
    demo.add_argument("--dash-root", default=".dash", help="where runs are stored (default .dash)")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

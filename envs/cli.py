"""`mtrl-bench data ...` subcommands (placeholder until the dataset issue lands)."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="generate and inspect offline datasets")
    p.set_defaults(func=lambda args: p.print_help())

"""The `mtrl-bench` command: one subcommand per concern, each defined next to the code it drives."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from mtrl_bench_envs import cli as data_cli

    parser = argparse.ArgumentParser(prog="mtrl-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    data_cli.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"mtrl-bench: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mtrl-bench: interrupted; finished work is kept, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

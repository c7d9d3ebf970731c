"""`demo`: the real engine against built-in local emulators of both APIs (no config needed)."""

from __future__ import annotations

import argparse
from typing import Any

from bridge.cli import Context


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo", help="run the real engine against built-in local emulators of both APIs")
    parser.set_defaults(handler=run)


def run(ctx: Context) -> int:
    from bridge.demo import run_demo

    return run_demo(ctx.out, retry_policy=ctx.retry_policy)

"""The command line: `gantui [flags]` trains; the sub-commands, one module each, share
`parser.py` (`Parser`, `fail`)."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from gantui.cli.commands import relay, runs, stop, watch
    from gantui.cli.compare import compare
    from gantui.cli.film import gif, interpolate
    from gantui.cli.parser import fail
    from gantui.cli.sample import sample
    from gantui.cli.scoring import evaluate_command, evaluator
    from gantui.cli.sweep import sweep
    from gantui.cli.train import train
    from gantui.common import GantuiError

    argv = sys.argv[1:] if argv is None else argv
    commands = {"sample": sample, "eval": evaluate_command, "watch": watch, "runs": runs, "stop": stop,
                "relay": relay, "gif": gif, "interpolate": interpolate, "evaluator": evaluator,
                "compare": compare, "sweep": sweep}
    try:
        if argv and argv[0] in commands:
            return commands[argv[0]](argv[1:])
        return train(argv)
    except GantuiError as err:  # what the user asked for cannot be: one line, never a traceback
        fail(str(err))

"""``ps-agent`` command line. Each command group lives in its own module exposing ``register(subparsers)``.

Exit codes: 0 success, 1 the operation ran and found/refused something (findings, refusal, failed
verification), 2 bad usage or unreadable input. No traceback reaches the user: every ``CdaError`` /
``PsAgentError`` is printed as its French message with its raw code beside it. argparse's own texts
are French (``ps_agent.cli.frparse``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from cda.errors import CdaError
from ps_agent.cli.common import error_text, exit_code_of
from ps_agent.cli.frparse import FrenchArgumentParser, french_argparse
from ps_agent.errors import PsAgentError

# Command groups, in the order shown by --help. Each module has register(subparsers) -> None.
_GROUPS = ("cda_cmd", "card_cmd", "dmp_cmd", "outbox_cmd", "audit_cmd", "patient_cmd", "serve_cmd")
_INSTALL_GROUPS = ("doctor_cmd", "setup_cmd")  # diagnosis and first-run settings (installer)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ps-agent")
    except PackageNotFoundError:  # running from a checkout that is not installed
        from ps_agent.config import LPS

        return LPS.version


def build_parser() -> argparse.ArgumentParser:
    with french_argparse():
        parser = FrenchArgumentParser(
            prog="ps-agent",
            description="Agent DMP pour les professionnels de santé (carte CPS, documents CDA, DMP, traces).",
        )
        parser.add_argument("--version", action="version", version=f"ps-agent {_version()}")
        sub = parser.add_subparsers(dest="group", metavar="COMMANDE")
        for name in (*_GROUPS, *_INSTALL_GROUPS):
            try:
                module = importlib.import_module(f"ps_agent.cli.{name}")
            except ModuleNotFoundError as exc:  # a group not (yet) present in this build
                if exc.name != f"ps_agent.cli.{name}":
                    raise
                continue
            module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    with french_argparse():
        parser = build_parser()
        args = parser.parse_args(argv)
        from ps_agent.logging_setup import setup_logging

        setup_logging(command=str(getattr(args, "group", "") or ""))
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help()
            return 2
        try:
            return int(func(args) or 0)
        except (CdaError, PsAgentError) as exc:
            print(error_text(exc), file=sys.stderr)
            return exit_code_of(exc)
        except KeyboardInterrupt:
            print("Interrompu.", file=sys.stderr)
            return 130
        except Exception as exc:  # never a traceback for the user (details at DEBUG level)
            logging.getLogger(__name__).debug("unexpected error", exc_info=True)
            internal = PsAgentError(
                f"Erreur interne ({type(exc).__name__}) : l'opération n'a pas abouti.", code="internal"
            )
            print(error_text(internal), file=sys.stderr)
            return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

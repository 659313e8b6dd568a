"""argparse in French: its own texts (usage, errors, help headers) translated, typos answered with a
suggestion.

argparse looks its texts up through the module-level ``gettext`` alias ``argparse._`` (and
``argparse.ngettext``) at the moment it formats them. ``french_argparse()`` swaps those two for the
French table below for the duration of a ``with`` block (the CLI wraps its whole run in it), so the
rest of the process keeps the standard behaviour. ``FrenchArgumentParser`` adds what a table cannot:
French choice errors with a "did you mean" suggestion and a French help header.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

# argparse's own messages (Python 3.11-3.13 spellings) -> French. Missing entries stay in English.
FRENCH: dict[str, str] = {
    "usage: ": "utilisation : ",
    "positional arguments": "arguments",
    "options": "options",
    "optional arguments": "options",
    "show this help message and exit": "afficher cette aide et quitter",
    "%(prog)s: error: %(message)s\n": "%(prog)s : erreur : %(message)s\n",
    "the following arguments are required: %s": "arguments obligatoires manquants : %s",
    "unrecognized arguments: %s": "arguments non reconnus : %s",
    "argument %(argument_name)s: %(message)s": "argument %(argument_name)s : %(message)s",
    "expected one argument": "une valeur est attendue",
    "expected at most one argument": "au plus une valeur est attendue",
    "expected at least one argument": "au moins une valeur est attendue",
    "not allowed with argument %s": "incompatible avec l'argument %s",
    "one of the arguments %s is required": "l'un des arguments %s est obligatoire",
    "ambiguous option: %(option)s could match %(matches)s": (
        "option ambiguë : %(option)s peut désigner %(matches)s"
    ),
    "invalid %(type)s value: %(value)r": "valeur invalide (%(type)s) : %(value)r",
    "invalid choice: %(value)r (choose from %(choices)s)": "choix invalide : %(value)r (choix : %(choices)s)",
    "ignored explicit argument %r": "valeur inattendue %r",
    "unexpected option string: %s": "option inattendue : %s",
    "unknown parser %(parser_name)r (choices: %(choices)s)": (
        "commande inconnue %(parser_name)r (choix : %(choices)s)"
    ),
    "cannot have multiple subparser arguments": "une seule commande à la fois",
    "expected %s argument": "%s valeur attendue",
    "expected %s arguments": "%s valeurs attendues",
}


def french(text: str) -> str:
    return FRENCH.get(text, text)


def french_plural(singular: str, plural: str, n: int) -> str:
    return french(singular if n == 1 else plural)


@contextlib.contextmanager
def french_argparse() -> Iterator[None]:
    """argparse speaks French inside the block (see the module docstring)."""
    module: Any = argparse
    saved: tuple[Callable[[str], str], Callable[[str, str, int], str]] = (module._, module.ngettext)
    module._, module.ngettext = french, french_plural
    try:
        yield
    finally:
        module._, module.ngettext = saved


class FrenchArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose choice errors are French and suggest the closest valid choice.

    Sub-parsers inherit the class (``add_subparsers`` uses the parser's own class)."""

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        choices = action.choices
        if choices is None or value in choices:
            return
        names = [str(c) for c in choices]
        close = difflib.get_close_matches(str(value), names, n=1, cutoff=0.5)
        hint = f" Vouliez-vous dire « {close[0]} » ?" if close else ""
        raise argparse.ArgumentError(
            action, f"choix invalide : « {value} » (choix possibles : {', '.join(names)}).{hint}"
        )

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """A command's unknown options are refused by the command itself, with the closest option."""
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and self._subcommand:
            french_names = [a.option_strings[0] for a in self._actions if a.option_strings]
            hints = []
            for extra in extras:
                name = extra.split("=", 1)[0]
                if not name.startswith("-"):
                    continue
                close = difflib.get_close_matches(name, french_names, n=1, cutoff=0.6) or (
                    difflib.get_close_matches(name, list(self._option_string_actions), n=1, cutoff=0.6)
                )
                if close:
                    hints.append(f" « {name} » : vouliez-vous dire « {close[0]} » ?")
            self.error(french("unrecognized arguments: %s") % " ".join(extras) + "." + "".join(hints))
        return parsed, extras

    @property
    def _subcommand(self) -> bool:
        return " " in self.prog  # "ps-agent dmp search": a command, not the program

    def error(self, message: str) -> NoReturn:
        with french_argparse():
            self.print_usage(sys.stderr)
            self.exit(2, french("%(prog)s: error: %(message)s\n") % {"prog": self.prog, "message": message})

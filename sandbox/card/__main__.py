"""``python -m sandbox.card``: insert or remove an emulated CPS card in the vpcd virtual reader."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sandbox.card import EMULATOR_ONLY_PROFILES, READER_NAMES, VPCD_PORTS, VpcdError, VpcdLink, make_card
from sandbox.card.readerstate import ReaderStateTimeout, wait_reader_state
from sandbox.card.vitale import VITALE_PROFILE_HELP, VITALE_PROFILES
from sandbox.errors import SandboxError
from sandbox.profiles import PROFILES


def _pid_file(reader: int) -> Path:
    return Path(tempfile.gettempdir()) / f"ps-agent-vcard-{VPCD_PORTS[reader]}.pid"


def _profiles_help() -> str:
    lines = ["profils :"]
    for name, p in PROFILES.items():
        what = f"{p.card_type} {p.profession_label} {p.given_name} {p.family_name} ({p.id_nat})"
        flags = " — code bloqué" if p.pin_blocked else " — certificats expirés" if p.expired else ""
        lines.append(f"  {name:<11} {what}{flags}")
    lines.extend(f"  {name:<11} {what}" for name, what in EMULATOR_ONLY_PROFILES.items())
    lines.extend(f"  {name:<18} carte Vitale : {what}" for name, what in VITALE_PROFILE_HELP.items())
    lines.append("Code porteur de test : 1234, code de déblocage : 12345678.")
    return "\n".join(lines)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _load_pki(directory: str | None) -> object:
    from sandbox.pki import default_directory, load_or_create

    return load_or_create(Path(directory) if directory else default_directory())


def cmd_run(args: argparse.Namespace) -> int:
    """Foreground: the card stays inserted until this process ends (SIGTERM / Ctrl-C = removal)."""
    pki = None if args.profile in VITALE_PROFILES else _load_pki(args.pki)  # a Vitale card has no keys
    card = make_card(pki, args.profile, t0=not args.t1, garbage=args.garbage)
    link = VpcdLink(card, reader=args.reader)
    link.insert()
    stop = {"now": False}

    def _term(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _term)
    print(f"ready {READER_NAMES[args.reader]}", flush=True)
    try:
        while link.inserted and not stop["now"]:
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    link.remove()
    return 0


def cmd_insert(args: argparse.Namespace) -> int:
    pid_file = _pid_file(args.reader)
    if pid_file.exists():
        try:
            pid = int(pid_file.read_text().strip())
        except ValueError:
            pid = 0
        if pid and _alive(pid):
            print(
                f"Une carte est déjà insérée dans {READER_NAMES[args.reader]} ; "
                "retirez-la d'abord (python -m sandbox.card remove).",
                file=sys.stderr,
            )
            return 1
        pid_file.unlink(missing_ok=True)
    if (
        args.profile not in PROFILES
        and args.profile not in EMULATOR_ONLY_PROFILES
        and args.profile not in VITALE_PROFILES
    ):
        print(f"Profil inconnu : {args.profile}\n{_profiles_help()}", file=sys.stderr)
        return 2
    cmd = [
        sys.executable,
        "-m",
        "sandbox.card",
        "run",
        "--profile",
        args.profile,
        "--reader",
        str(args.reader),
    ]
    if args.pki:
        cmd += ["--pki", args.pki]
    if args.t1:
        cmd.append("--t1")
    if args.garbage:
        cmd.append("--garbage")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.wait(5)
        err = proc.stderr.read() if proc.stderr else ""
        print(
            err.strip().splitlines()[-1] if err.strip() else "Le démarrage de la carte a échoué.",
            file=sys.stderr,
        )
        return 1
    proc.stdout.close()
    pid_file.write_text(str(proc.pid))
    try:  # return only once pcscd shows the card to every client
        wait_reader_state(READER_NAMES[args.reader], present=True, timeout_s=5.0)
    except ReaderStateTimeout as exc:
        print(f"Le lecteur {READER_NAMES[args.reader]} ne voit pas la carte : {exc}", file=sys.stderr)
        return 1
    print(f"Carte « {args.profile} » insérée dans {READER_NAMES[args.reader]} (processus {proc.pid}).")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    pid_file = _pid_file(args.reader)
    if not pid_file.exists():
        print(f"Aucune carte émulée dans {READER_NAMES[args.reader]}.")
        return 0
    pid = int(pid_file.read_text().strip() or 0)
    pid_file.unlink(missing_ok=True)
    if pid and _alive(pid):
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not _alive(pid):
                break
            time.sleep(0.1)
    try:
        wait_reader_state(READER_NAMES[args.reader], present=False, timeout_s=5.0)
    except ReaderStateTimeout:
        pass  # pcscd down or another card inserted by someone else: the emulator is gone anyway
    print(f"Carte retirée de {READER_NAMES[args.reader]}.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.card",
        description="Carte CPS émulée derrière pcscd (lecteur virtuel vpcd).",
        epilog=_profiles_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMANDE")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--reader", type=int, choices=sorted(VPCD_PORTS), default=0, help="lecteur vpcd (0 ou 1)"
        )

    for name, func, text in (
        ("insert", cmd_insert, "insérer une carte (en arrière-plan)"),
        ("run", cmd_run, "insérer une carte au premier plan (Ctrl-C la retire)"),
    ):
        p = sub.add_parser(
            name, help=text, epilog=_profiles_help(), formatter_class=argparse.RawDescriptionHelpFormatter
        )
        p.add_argument("--profile", required=True, help="profil de carte (voir la liste ci-dessous)")
        p.add_argument(
            "--pki",
            help="répertoire de la PKI de test (défaut : $PS_AGENT_PKI_DIR ou ~/.local/share/ps-agent/test-pki)",  # noqa: E501
        )
        p.add_argument("--t1", action="store_true", help="répondre directement (sans 61xx / GET RESPONSE)")
        p.add_argument("--garbage", action="store_true", help="répondre n'importe quoi (test d'erreurs)")
        common(p)
        p.set_defaults(func=func)
    p = sub.add_parser("remove", help="retirer la carte")
    common(p)
    p.set_defaults(func=cmd_remove)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (VpcdError, SandboxError) as exc:
        print(f"Erreur : {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

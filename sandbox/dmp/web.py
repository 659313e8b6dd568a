"""A small local web page for the patient console (``python -m sandbox patient --data DIR web``).

Plain ``http.server`` on loopback only (a test tool: no account, no TLS), French pages: the list of
patients, then for one patient the DMP status, emergency settings, professionals (block/unblock),
documents (mask/unmask, make visible) and the access traces. Every action is a POST form that calls
the same :class:`sandbox.dmp.store.Store` methods as the CLI, then redirects (303) to the patient page.
"""

from __future__ import annotations

import html
import ipaddress
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

from sandbox.dmp.store import (
    ACTIVE,
    CLOSED,
    INVISIBLE_PATIENT,
    INVISIBLE_REPRESENTANTS_LEGAUX,
    MASQUE_PS,
    OPPOSED,
    VALIDE,
    Store,
    StoreError,
)
from sandbox.errors import SandboxError
from sandbox.profiles import PROFILES

MAX_FORM_BYTES = 8192
_STATUS_FR = {ACTIVE: "ouvert", CLOSED: "fermé", OPPOSED: "opposition"}
_CSS = (
    "body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}form{display:inline}"
    ".err{color:#a00}.flag{color:#a50}"
)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str) -> bytes:
    return (
        f'<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>{body}</body></html>"
    ).encode()


def _button(ins: str, action: str, label: str, **fields: str) -> str:
    hidden = "".join(f'<input type="hidden" name="{_e(k)}" value="{_e(v)}">' for k, v in fields.items())
    return (
        f'<form method="post" action="/patient/{quote(ins)}/{action}">{hidden}'
        f'<button type="submit">{_e(label)}</button></form>'
    )


class _Handler(BaseHTTPRequestHandler):
    store: Store  # set on the subclass made by serve()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, *, location: str | None = None) -> None:
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        try:
            if path == "/":
                self._send(HTTPStatus.OK, self._index())
            elif path.startswith("/patient/") and path.count("/") == 2:
                self._send(HTTPStatus.OK, self._patient(unquote(path.split("/")[2])))
            else:
                self._send(HTTPStatus.NOT_FOUND, _page("Page introuvable", '<a href="/">Patients</a>'))
        except SandboxError as exc:
            self._send(HTTPStatus.BAD_REQUEST, _page("Erreur", f'<p class="err">{_e(exc)}</p>'))

    def do_POST(self) -> None:
        parts = urlsplit(self.path).path.split("/")
        length = int(self.headers.get("Content-Length") or 0)
        if len(parts) != 4 or parts[1] != "patient" or length > MAX_FORM_BYTES:
            self._send(HTTPStatus.BAD_REQUEST, _page("Erreur", '<p class="err">Requête invalide.</p>'))
            return
        ins, action = unquote(parts[2]), parts[3]
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode("utf-8", "replace")).items()}
        try:
            self._act(ins, action, form)
        except SandboxError as exc:
            body = _page(
                "Action refusée", f'<p class="err">{_e(exc)}</p><a href="/patient/{quote(ins)}">Retour</a>'
            )
            self._send(HTTPStatus.BAD_REQUEST, body)
            return
        self._send(HTTPStatus.SEE_OTHER, b"", location=f"/patient/{quote(ins)}")

    # -- pages ----------------------------------------------------------------------------------------
    def _index(self) -> bytes:
        rows = "".join(
            f'<tr><td><a href="/patient/{quote(p.ins)}">{_e(p.ins)}</a></td><td>{_e(p.family_name)}'
            f" {_e(p.given_names)}</td><td>{_e(_STATUS_FR.get(p.status, p.status))}</td>"
            f"<td>{self.store.document_count(p.ins)}</td></tr>"
            for p in self.store.patients()
        )
        return _page(
            "Mon espace santé (bac à sable) — patients",
            f"<table><tr><th>INS</th><th>Patient</th><th>DMP</th><th>Documents</th></tr>{rows}</table>",
        )

    def _patient(self, ins: str) -> bytes:
        p = self.store.patient_or_raise(ins)
        parts = [
            '<p><a href="/">Tous les patients</a></p>',
            f"<p>INS {_e(p.ins)} ({_e(p.oid)}), né(e) le {_e(p.birth_date)}, DMP "
            f"<b>{_e(_STATUS_FR.get(p.status, p.status))}</b>,"
            f" médecin traitant : {_e(p.medecin_traitant or 'aucun')}</p>",
            "<p>"
            + " ".join(
                _button(ins, "status", label, status=value)
                for value, label in ((ACTIVE, "Rouvrir"), (CLOSED, "Fermer le DMP"), (OPPOSED, "S'opposer"))
                if value != p.status
            )
            + "</p>",
            "<h2>Accès en urgence</h2><p>",
        ]
        for field, label, value in (
            ("bris_de_glace", "Bris de glace (autres professionnels)", p.allow_bris_de_glace),
            ("centre_15", "SAMU - centre 15", p.allow_centre_15),
            ("masked_in_emergency", "Documents masqués consultables en urgence", p.allow_masked_in_emergency),
        ):
            state = "autorisé" if value else "refusé"
            parts.append(
                f"{_e(label)} : <b>{state}</b> "
                + _button(
                    ins, "emergency", "Refuser" if value else "Autoriser", field=field, value=str(not value)
                )
                + "<br>"
            )
        parts.append(
            "</p><h2>Professionnels</h2><table><tr><th>Identifiant</th><th>Nom</th><th>État</th><th></th></tr>"
        )
        for a in self.store.authorisations(ins):
            action = (
                _button(ins, "unblock", "Débloquer", ps=a.ps_id)
                if a.status != VALIDE
                else _button(ins, "block", "Bloquer", ps=a.ps_id)
            )
            parts.append(
                f"<tr><td>{_e(a.ps_id)}</td><td>{_e(a.given_name)} {_e(a.family_name)}</td>"
                f"<td>{'autorisé' if a.status == VALIDE else 'bloqué'}</td><td>{action}</td></tr>"
            )
        options = "".join(
            f'<option value="{_e(n)}">{_e(n)} ({_e(v.family_name)})</option>' for n, v in PROFILES.items()
        )
        parts.append(
            f'</table><form method="post" action="/patient/{quote(ins)}/block">'
            f'<select name="ps">{options}</select>'
            '<button type="submit">Bloquer ce professionnel</button></form>'
        )
        parts.append(
            "<h2>Documents</h2><table><tr><th>Date</th><th>Type</th><th>Titre</th><th>Statut</th><th>État</th><th></th></tr>"
        )
        for d in self.store.documents(ins):
            flags = []
            if MASQUE_PS in d.confidentiality:
                flags.append("masqué aux professionnels")
            if INVISIBLE_PATIENT in d.confidentiality:
                flags.append("invisible au patient")
            if INVISIBLE_REPRESENTANTS_LEGAUX in d.confidentiality:
                flags.append("invisible aux représentants légaux")
            buttons = _button(ins, "unmask" if d.masked else "mask", "Démasquer" if d.masked else "Masquer",
                              document=d.entry_uuid)  # fmt: skip
            if INVISIBLE_PATIENT in d.confidentiality:
                buttons += _button(ins, "visible", "Rendre visible", document=d.entry_uuid)
            parts.append(
                f"<tr><td>{_e(d.creation_time[:8])}</td><td>{_e(d.type_code)}</td><td>{_e(d.title)}</td>"
                f"<td>{_e(d.status.rsplit(':', 1)[-1])}</td><td class=flag>{_e(', '.join(flags))}</td>"
                f"<td>{buttons}</td></tr>"
            )
        parts.append("</table><h2>Traces d'accès</h2><table><tr><th>Date</th><th>Transaction</th><th>Qui</th>"
                     "<th>Structure</th><th>Mode</th><th>Quoi</th><th>Résultat</th></tr>")  # fmt: skip
        for t in reversed(self.store.traces(ins, limit=200)):
            mode = t.mode + (f", {t.purpose}" if t.purpose and t.purpose != "normal" else "")
            mode += f" (motif : {t.reason})" if t.reason else ""
            parts.append(
                f"<tr><td>{_e(t.at[:19])}</td><td>{_e(t.transaction)}</td><td>{_e(t.ps_name)} ({_e(t.ps_id)},"
                f" {_e(t.role)})</td><td>{_e(t.structure_id)}</td><td>{_e(mode)}</td><td>{_e(t.what)}</td>"
                f"<td>{_e(t.result)}</td></tr>"
            )
        parts.append("</table>")
        return _page(f"{p.family_name} {p.given_names}", "".join(parts))

    def _act(self, ins: str, action: str, form: dict[str, str]) -> None:
        store = self.store
        ps = form.get("ps", "")
        ps = PROFILES[ps].id_nat if ps in PROFILES else ps
        if action == "status":
            store.set_status(ins, form.get("status", ""))
        elif action == "block":
            store.block(ins, ps)
        elif action == "unblock":
            store.unblock(ins, ps)
        elif action in ("mask", "unmask"):
            store.mask(ins, form.get("document", ""), action == "mask")
        elif action == "visible":
            store.make_visible(ins, form.get("document", ""))
        elif action == "emergency":
            name = form.get("field", "")
            if name not in ("bris_de_glace", "centre_15", "masked_in_emergency"):
                raise StoreError(f"Réglage inconnu : {name}.")
            store.set_emergency(ins, **{name: form.get("value") == "True"})
        else:
            raise StoreError(f"Action inconnue : {action}.")


def serve(store: Store, *, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Start the page in a background thread (loopback only); ``server.shutdown()`` stops it."""
    if not ipaddress.ip_address(host).is_loopback:
        raise SandboxError(f"La page patient n'écoute que sur la boucle locale (reçu : {host}).")
    handler = type("PatientPageHandler", (_Handler,), {"store": store})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="patient-web", daemon=True).start()
    return server

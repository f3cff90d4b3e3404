"""German for everything people read: report sentences, labels, table headers, CLI messages.

Keyed by the English text as written in the code; ``{fields}`` must match. German domain
words stay as authorities use them (Aktenzeichen, Quarantäne, Abholbestätigung).
"""

from __future__ import annotations

from gateway.ui.reasons import GERMAN_REASONS

GERMAN: dict[str, str] = {
    # -- verdict, reasons, warnings (gateway.audit.report) ------------------------------------------
    "not signed": "nicht signiert",
    "the message structure could not be read": "der Aufbau der Nachricht war nicht lesbar",
    "no case reference recognised": "kein Aktenzeichen erkannt",
    "the signer's certificate is not trusted": "dem Zertifikat des Unterzeichners wird nicht vertraut",
    "the signer is not the sender": "Unterzeichner und Absender sind verschieden",
    "could not be decrypted: no matching key": "nicht entschlüsselbar: kein passender Schlüssel",
    "could not be decrypted: the encrypted content is damaged": (
        "nicht entschlüsselbar: der verschlüsselte Inhalt ist beschädigt"
    ),
    "verified: signed by the sender, signature valid": "verifiziert: vom Absender signiert, Signatur gültig",
    "not verified": "nicht verifiziert",
    "could not be read safely": "nicht sicher lesbar",
    "sent on behalf of the signer by another address (Sender)": (
        "im Auftrag des Unterzeichners von einer anderen Adresse gesendet (Sender)"
    ),
    "replies would go to an address other than the signer's (Reply-To)": (
        "Antworten gingen an eine andere Adresse als die des Unterzeichners (Reply-To)"
    ),
    "gateway": "Gateway",
    "{name} (command line)": "{name} (Kommandozeile)",
    "{name} (command line, sudo by {sudo_user})": "{name} (Kommandozeile, per sudo von {sudo_user})",
    "decrypt": "entschlüsseln",
    "valid": "gültig",
    "invalid": "ungültig",
    "untrusted": "nicht vertrauenswürdig",
    "none": "keine",
    "error": "Fehler",
    # -- event sentences (gateway.audit.report.DESCRIBE) --------------------------------------------
    "Checked: {verdict}": "Geprüft: {verdict}",
    ", signer {signer}": ", Unterzeichner {signer}",
    "; warning: {warning}": "; Warnung: {warning}",
    "Assigned to case {case} by rule “{rule}”": "Dem Aktenzeichen {case} zugeordnet nach Regel „{rule}“",
    "Not assigned to a case; filed under {folder}": "Keinem Aktenzeichen zugeordnet; abgelegt unter {folder}",
    "Released from quarantine by {actor} into {path}": "Aus der Quarantäne freigegeben von {actor} nach {path}",
    "; note: {note}": "; Vermerk: {note}",
    "Confirmed moved on the mail server (after a restart)": (
        "Verschieben auf dem Mailserver bestätigt (nach einem Neustart)"
    ),
    "Moved on the mail server to {folder}": "Auf dem Mailserver verschoben nach {folder}",
    "Moved by {actor} from {old} to {path}: {note}": ("Von {actor} umgelegt von {old} nach {path}: {note}"),
    "Filed in case folder {path}": "In der Akte abgelegt: {path}",
    " (completed after a restart)": " (nach einem Neustart abgeschlossen)",
    "Daemon started (pid {pid}, version {version})": "Dienst gestartet (PID {pid}, Version {version})",
    "Daemon stopped by {signal}": "Dienst beendet durch {signal}",
    "Daemon stopped: the single run (--once) is done": "Dienst beendet: der einmalige Lauf (--once) ist fertig",
    "Daemon stopped by an error: {error}": "Dienst beendet durch einen Fehler: {error}",
    "Configuration {path} reloaded (sha256 {sha256}…)": "Konfiguration {path} neu geladen (sha256 {sha256}…)",
    "New configuration rejected, the one in force kept: {key}: {problem}": (
        "Neue Konfiguration abgelehnt, die geltende beibehalten: {key}: {problem}"
    ),
    "Records moved from {source} to {target}; the trail continues after entry {seq}": (
        "Aufzeichnungen von {source} nach {target} übertragen; das Protokoll setzt nach Eintrag {seq} fort"
    ),
    "Gateway started with configuration {path} (sha256 {sha256}…)": (
        "Gateway gestartet mit Konfiguration {path} (sha256 {sha256}…)"
    ),
    "Received in mailbox {mailbox}/{folder} (UID {uid}, {size} bytes)": (
        "Eingegangen im Postfach {mailbox}/{folder} (UID {uid}, {size} Bytes)"
    ),
    "; delivered to the mailbox {received}": "; Zugang im Postfach: {received}",
    "; the server gave no arrival time, the fetch time stands for it": (
        "; der Server nannte keine Zugangszeit, es gilt die Abrufzeit"
    ),
    "Same message as {original} arrived again; not filed twice": (
        "Dieselbe Nachricht wie {original} erneut eingegangen; nicht doppelt abgelegt"
    ),
    "Decrypted ({scheme})": "Entschlüsselt ({scheme})",
    "Could not be decrypted ({scheme}): {reason}": "Nicht entschlüsselbar ({scheme}): {reason}",
    "Used our {scheme} key to {purpose}": "Unseren {scheme}-Schlüssel verwendet, um zu {purpose}",
    "Signature checked ({scheme}): {state}, signer {signer}": (
        "Signatur geprüft ({scheme}): {state}, Unterzeichner {signer}"
    ),
    "Held in quarantine": "In Quarantäne genommen",
    "Processing was interrupted; the message is fetched again": (
        "Verarbeitung unterbrochen; die Nachricht wird erneut abgeholt"
    ),
    "Reading mailbox {mailbox} failed unexpectedly ({error})": (
        "Lesen des Postfachs {mailbox} unerwartet fehlgeschlagen ({error})"
    ),
    "Mailbox {mailbox}: the server rejected the login; not tried again until a restart or "
    "auth_retry_interval ({error})": (
        "Postfach {mailbox}: der Server hat die Anmeldung abgelehnt; kein neuer Versuch bis zu einem "
        "Neustart oder nach auth_retry_interval ({error})"
    ),
    "Mailbox {mailbox} cannot be read; retrying ({error})": (
        "Postfach {mailbox} kann nicht gelesen werden; neuer Versuch folgt ({error})"
    ),
    "Mailbox {mailbox} works again (failing since {since}; last error: {error})": (
        "Postfach {mailbox} funktioniert wieder (gestört seit {since}; letzter Fehler: {error})"
    ),
    "Mailbox {mailbox}: the disk is full at {path}; nothing was acknowledged, retrying ({error})": (
        "Postfach {mailbox}: der Datenträger ist voll ({path}); nichts wurde quittiert, neuer Versuch folgt ({error})"
    ),
    "The system clock went back {seconds} s (last entry at {last}); entries are ordered by number": (
        "Die Systemuhr ging {seconds} s zurück (letzter Eintrag um {last}); die Einträge gelten in ihrer Nummernfolge"
    ),
    "The outbox works again (last error: {error})": "Der Postausgang funktioniert wieder (letzter Fehler: {error})",
    "The disk is full at {path}: the sent copy is filed once there is room again": (
        "Der Datenträger ist voll ({path}): die Ablage der gesendeten Kopie folgt, sobald wieder Platz ist"
    ),
    # -- HTML report (gateway.audit.html) -----------------------------------------------------------
    "Filed": "Abgelegt",
    "Released from quarantine and filed": "Aus der Quarantäne freigegeben und abgelegt",
    "In quarantine": "In Quarantäne",
    "Duplicate (filed earlier)": "Duplikat (früher abgelegt)",
    "Interrupted, fetched again": "Unterbrochen, erneut abgeholt",
    "Could not be decrypted": "Nicht entschlüsselbar",
    "Poststelle audit report": "Poststelle – Prüfbericht",
    "Contents": "Inhalt",
    "Case {case}": "Aktenzeichen {case}",
    "{n} item": "{n} Eingang",
    "{n} items": "{n} Eingänge",
    "Not assigned to a case": "Keinem Aktenzeichen zugeordnet",
    "Gateway events": "Ereignisse des Gateways",
    "No entries match the filters.": "Keine Einträge entsprechen den Filtern.",
    "{n} item, in order of arrival.": "{n} Eingang, in der Reihenfolge des Eingangs.",
    "{n} items, in order of arrival.": "{n} Eingänge, in der Reihenfolge des Eingangs.",
    "Items without a recognised case reference, and items held in quarantine.": (
        "Eingänge ohne erkanntes Aktenzeichen und Eingänge in Quarantäne."
    ),
    "Generated {time}.": "Erstellt {time}.",
    "{n} recorded event": "{n} aufgezeichnetes Ereignis",
    "{n} recorded events": "{n} aufgezeichnete Ereignisse",
    " from {first} to {last}": " vom {first} bis {last}",
    ". Selected by: {filters}": ". Ausgewählt nach: {filters}",
    "Times in {zone} ({names})": "Zeiten in {zone} ({names})",
    "The integrity of the record was not checked for this report.": (
        "Die Unversehrtheit der Aufzeichnung wurde für diesen Bericht nicht geprüft."
    ),
    "{n} entries in the record": "{n} Einträge in der Aufzeichnung",
    "{n} signed checkpoint": "{n} signierter Prüfpunkt",
    "{n} signed checkpoints": "{n} signierte Prüfpunkte",
    "sealed up to entry {seq}": "versiegelt bis Eintrag {seq}",
    "{n} filed item and {q} in quarantine compared with their checksums.": (
        "{n} abgelegter Eingang und {q} in Quarantäne mit ihren Prüfsummen verglichen."
    ),
    "{n} filed items and {q} in quarantine compared with their checksums.": (
        "{n} abgelegte Eingänge und {q} in Quarantäne mit ihren Prüfsummen verglichen."
    ),
    "The newest {n} entry is not yet covered by a signed checkpoint (normal until the gateway's next run ends).": (
        "Der neueste Eintrag ({n}) ist noch von keinem signierten Prüfpunkt erfasst "
        "(normal bis zum Ende des nächsten Laufs des Gateways)."
    ),
    "The newest {n} entries are not yet covered by a signed checkpoint (normal until the gateway's next run ends).": (
        "Die neuesten {n} Einträge sind noch von keinem signierten Prüfpunkt erfasst "
        "(normal bis zum Ende des nächsten Laufs des Gateways)."
    ),
    "Integrity check passed.": "Prüfung der Unversehrtheit bestanden.",
    "The record is complete and unaltered as far as it can be checked:": (
        "Die Aufzeichnung ist vollständig und unverändert, soweit prüfbar:"
    ),
    "… and {n} more": "… und {n} weitere",
    "Integrity check FAILED: {n} problem found.": "Prüfung der Unversehrtheit FEHLGESCHLAGEN: {n} Problem gefunden.",
    "Integrity check FAILED: {n} problems found.": "Prüfung der Unversehrtheit FEHLGESCHLAGEN: {n} Probleme gefunden.",
    "The record below may have been altered.": "Die folgende Aufzeichnung wurde möglicherweise verändert.",
    "entry {seq}": "Eintrag {seq}",
    "Letter received": "Eingang",
    "Document": "Dokument",
    "message": "Nachricht",
    "document": "Dokument",
    "from {sender}": "von {sender}",
    "signature check: {verdict}": "Signaturprüfung: {verdict}",
    "(unknown)": "(unbekannt)",
    "Warning:": "Warnung:",
    "Subject:": "Betreff:",
    "Each entry of the record holds a checksum of the one before it, and the gateway signs the chain "
    "regularly with its audit key; the command {command} re-checks all of it.": (
        "Jeder Eintrag der Aufzeichnung enthält eine Prüfsumme des vorigen, und das Gateway signiert die Kette "
        "regelmäßig mit seinem Prüfschlüssel; der Befehl {command} prüft alles nach."
    ),
    "Last entry checksum:": "Prüfsumme des letzten Eintrags:",
    "audit key id": "Kennung des Prüfschlüssels",
    # -- CLI messages (cli.common) ------------------------------------------------------------------
    "(none)": "(keine)",
    "error: {message}": "Fehler: {message}",
    "configuration error: {message}": "Konfigurationsfehler: {message}",
    "warning: {message}": "Warnung: {message}",
    "note: {message}": "Hinweis: {message}",
    "wrote {path}": "{path} geschrieben",
    "released {id} into {path}": "{id} freigegeben nach {path}",
    "outbox {id}: {state}": "Postausgang {id}: {state}",
    "Queued for sending to {recipients} (Message-ID {message_id})": (
        "Zum Versand an {recipients} eingereiht (Message-ID {message_id})"
    ),
    "Handed to the relay for {recipients}; it answered: {replies}": (
        "An den Mailserver übergeben für {recipients}; Antwort: {replies}"
    ),
    "The relay deferred it ({replies}); next attempt at {next}": (
        "Vom Mailserver zurückgestellt ({replies}); nächster Versuch um {next}"
    ),
    "Not delivered to {recipients}: {replies}": "Nicht zugestellt an {recipients}: {replies}",
    "Sent again after a crash (same Message-ID {message_id})": (
        "Nach einem Absturz erneut gesendet (gleiche Message-ID {message_id})"
    ),
    "Sent again: the relay's answer to the last attempt was lost (same Message-ID {message_id})": (
        "Erneut gesendet: die Antwort des Relays auf den letzten Versuch ging verloren "
        "(gleiche Message-ID {message_id})"
    ),
    "Stopped in the outbox by {actor}": "Im Postausgang angehalten von {actor}",
    "Released from the outbox hold by {actor}": "Im Postausgang freigegeben von {actor}",
    "Retry requested by {actor}": "Neuer Versuch angefordert von {actor}",
    "Withdrawn from the outbox by {actor}": "Aus dem Postausgang zurückgezogen von {actor}",
    "The sent copy was filed in {path}": "Die gesendete Fassung wurde abgelegt in {path}",
    "Copied to the mailbox folder {folder}": "In den Postfachordner {folder} kopiert",
    "Delivery to {recipient}: {state} (evidence: {kind}, {evidence})": (
        "Zustellung an {recipient}: {state} (Nachweis: {kind}, {evidence})"
    ),
    "; the state stays {state} ({outcome})": "; der Zustand bleibt {state} ({outcome})",
    "delivery status notification": "Zustellbenachrichtigung",
    "return receipt": "Lesebestätigung",
    "De-Mail confirmation": "De-Mail-Bestätigung",
    "the relay's reply": "Antwort des Mailservers",
    "the outbox": "Postausgang",
    "confirmed again": "erneut bestätigt",
    "a delay notice": "eine Verzögerungsmeldung",
    "an earlier step, arrived late": "ein früherer Schritt, verspätet eingegangen",
    "contradicts the recorded state": "widerspricht dem erfassten Zustand",
    "not one of our documents": "keines unserer Dokumente",
    # -- receipts on the case timeline (gateway.audit.report, gateway.audit.html) --------------------
    "Receipt received": "Nachweis eingegangen",
    "Delivery status notification": "Zustellbenachrichtigung",
    "Return receipt": "Lesebestätigung",
    "its envelope id (ENVID)": "seine Umschlagkennung (ENVID)",
    "the document's Message-ID": "die Message-ID des Dokuments",
    "its De-Mail private id": "seine De-Mail-Kennung (private id)",
    "{kind} for the sent document {document}, matched by {how}: {steps}": (
        "{kind} zum gesendeten Dokument {document}, zugeordnet über {how}: {steps}"
    ),
    "; left out: {ignored}": "; nicht berücksichtigt: {ignored}",
    "{kind} that changes no delivery record: {reason}": "{kind}, der keinen Zustellstand ändert: {reason}",
    "Assigned to case {case}, the case of the sent document it is about": (
        "Dem Aktenzeichen {case} zugeordnet, dem des gesendeten Dokuments, auf das er sich bezieht"
    ),
    # -- sent documents in the reports (gateway.audit.html, gateway.audit.outbound_view) -------------
    "Sent documents": "Gesendete Dokumente",
    "Outgoing document": "Ausgangsdokument",
    "outbox id {id}": "Postausgang-Nr. {id}",
    "Queued": "Eingereiht",
    "State": "Stand",
    "Recipients": "Empfänger",
    "Recipient": "Empfänger",
    "Relay's reply": "Antwort des Mailservers",
    "Queue id": "Warteschlangen-ID",
    "Delivery": "Zustellung",
    "{n} attempt": "{n} Versuch",
    "{n} attempts": "{n} Versuche",
    "signed ({scheme})": "signiert ({scheme})",
    "encrypted": "verschlüsselt",
    "not encrypted": "nicht verschlüsselt",
    "resent after a crash (same Message-ID)": "nach einem Absturz erneut gesendet (gleiche Message-ID)",
    "sent copy: {path}": "gesendete Fassung: {path}",
    "(Bcc)": "(Bcc)",
    "Audit signing key rotated: {old} hands over to {new}": (
        "Signaturschlüssel des Protokolls gewechselt: {old} übergibt an {new}"
    ),
    "blind copy (Bcc) of {id}": "Blindkopie (Bcc) von {id}",
    "a recipient's key was not used: {reason}": "Schlüssel eines Empfängers nicht verwendet: {reason}",
    "last answer: {reply}": "letzte Antwort: {reply}",
    "no delivery confirmation": "keine Zustellbestätigung",
    "since {time}": "seit {time}",
    "(evidence: {evidence})": "(Nachweis: {evidence})",
    "queued": "eingereiht",
    "handed to the relay": "an den Mailserver übergeben",
    "relayed onwards": "weitergeleitet",
    "delivered": "zugestellt",
    "displayed to the recipient": "vom Empfänger angezeigt",
    "processed by the recipient": "vom Empfänger verarbeitet",
    "dispatched (De-Mail)": "versandt (De-Mail, Versandbestätigung)",
    "received (De-Mail)": "eingegangen (De-Mail, Eingangsbestätigung)",
    "retrieved (De-Mail)": "abgeholt (De-Mail, Abholbestätigung)",
    "delayed": "verzögert",
    "failed": "gescheitert",
    "waiting": "wartet",
    "accepted by the relay": "vom Mailserver angenommen",
    "refused": "abgelehnt",
    "being sent": "wird gesendet",
    "deferred": "zurückgestellt",
    "sent": "gesendet",
    "not delivered": "nicht zugestellt",
    "on hold": "angehalten",
    "withdrawn": "zurückgezogen",
    "De-Mail integrity of {file}: {status}": "De-Mail-Integrität von {file}: {status}",
    "reasons: {reasons}": "Gründe: {reasons}",
    "De-Mail checked: provider signature {integrity}; absenderbestätigt: {authoritative}; persönlich: {private}": (
        "De-Mail geprüft: Signatur des Anbieters {integrity}; absenderbestätigt: {authoritative}; persönlich: {private}"
    ),
    "claimed, not proven": "behauptet, nicht belegt",
    "served on {date} (Abholbestätigung)": "zugestellt am {date} (Abholbestätigung)",
    "deemed served on {date} (§5a VwZG)": "gilt als zugestellt am {date} (§5a VwZG)",
    "proven": "belegt",
    "hash-only": "nur Prüfsumme",
    "no": "nein",
    "cannot read {path}: {reason}": "{path} nicht lesbar: {reason}",
    "is a directory": "ist ein Verzeichnis",
    "no such file": "Datei nicht gefunden",
    "permission denied": "keine Berechtigung",
    "cannot start: {reason}": "Start nicht möglich: {reason}",
    "cannot create: {reason}": "Anlegen nicht möglich: {reason}",
    "created {path}": "{path} angelegt",
    "nothing to create: {path} is set up": "nichts anzulegen: {path} ist eingerichtet",
    "tenant {name}": "Mandant {name}",
    # -- audit verify (cli.audit) -------------------------------------------------------------------
    "FAILED: {n} break": "FEHLGESCHLAGEN: {n} Unstimmigkeit",
    "FAILED: {n} breaks": "FEHLGESCHLAGEN: {n} Unstimmigkeiten",
    "audit verify: {status}  ({seconds} s)": "audit verify: {status}  ({seconds} s)",
    "key {id} from {file}": "Schlüssel {id} aus {file}",
    "no public key": "ohne öffentlichen Schlüssel",
    "entries": "Einträge",
    "checkpoints": "Prüfpunkte",
    "case folders": "Aktenordner",
    "quarantine": "Quarantäne",
    "ledger": "Eingangsbuch",
    "json-lines": "JSON-Lines",
    "{n} after entry {seq} (the head given)": "{n} nach Eintrag {seq} (dem angegebenen Kopf)",
    "none checked: the head given is not an entry of this trail": (
        "keine geprüft: der angegebene Kopf ist kein Eintrag dieser Kette"
    ),
    "{hash} (keep it for `audit verify --since`)": "{hash} (für `audit verify --since` aufbewahren)",
    "{entries} entries placed since checked against their manifests": (
        "{entries} seitdem abgelegte Einträge mit ihren Manifesten verglichen"
    ),
    "not compared (--since)": "nicht verglichen (--since)",
    "head": "Kopf",
    "{n} signed, checked with {key}; sealed up to entry {seq}": (
        "{n} signiert, geprüft mit {key}; versiegelt bis Eintrag {seq}"
    ),
    "{n} folders, {entries} entries checked against their manifests": (
        "{n} Ordner, {entries} Einträge mit ihren Manifesten verglichen"
    ),
    "{n} entries checked against their manifests": "{n} Einträge mit ihren Manifesten verglichen",
    "{n} messages compared with the entries and the trail": (
        "{n} Nachrichten mit den Einträgen und der Aufzeichnung verglichen"
    ),
    "breaks:": "Unstimmigkeiten:",
    "warnings:": "Warnungen:",
    "not checked": "nicht geprüft",
    "lagging {n} entries": "{n} Einträge im Rückstand",
    "in step": "auf dem Stand",
    "{n} lines, {state} ({file})": "{n} Zeilen, {state} ({file})",
    "file:": "Datei:",
    "expected:": "erwartet:",
    "found:": "gefunden:",
    # -- CLI table headers (cli.common.print_table: the column name in capitals) --------------------
    "SEQ": "NR",
    "USER": "BENUTZER",
    "HASH": "HASH",
    "AT": "ZEIT",
    "EVENT": "EREIGNIS",
    "ACTOR": "DURCH",
    "MESSAGE": "NACHRICHT",
    "CASE": "AKTENZEICHEN",
    "SUMMARY": "BESCHREIBUNG",
    "ID": "ID",
    "RECEIVED": "EINGANG",
    "VALIDATED": "GEPRÜFT ZUM",
    "{time} (fetched)": "{time} (Abruf)",
    "arrival": "Zugang",
    "fetch": "Abruf",
    "given": "vorgegeben",
    "now": "jetzt",
    "{time} ({source})": "{time} ({source})",
    "FROM": "ABSENDER",
    "REASONS": "GRÜNDE",
    "SUBJECT": "BETREFF",
    "FILE": "DATEI",
    "VERDICT": "ERGEBNIS",
    "SIGNATURE": "SIGNATUR",
    "SIGNER": "UNTERZEICHNER",
    "ENCRYPTION": "VERSCHLÜSSELUNG",
    "WARNINGS": "WARNUNGEN",
    "CHECK": "PRÜFUNG",
    "TENANT": "MANDANT",
    "TARGET": "ZIEL",
    "RESULT": "ERGEBNIS",
    "DETAIL": "DETAIL",
    "MAILBOX": "POSTFACH",
    "LAST_POLL": "LETZTE_ABFRAGE",
    "LAST_SUCCESS": "LETZTER_ERFOLG",
    "BACKLOG": "RÜCKSTAND",
    "LAST_ERROR_AT": "LETZTER_FEHLER_UM",
    "LAST_ERROR": "LETZTER_FEHLER",
    "HOLDER": "KNOTEN",
    "EPOCH": "EPOCHE",
    "EXPIRES_AT": "LÄUFT_AB",
    "EXPIRED": "ABGELAUFEN",
    "STATE": "ZUSTAND",
    "STATE_SINCE": "SEIT",
    "CASE_REF": "AKTENZEICHEN",
    "CASE_FOLDER": "AKTENORDNER",
    "MESSAGES": "NACHRICHTEN",
    "LAST": "LETZTE",
    "RULE": "REGEL",
    "TAKEN": "GEWÄHLT",
    "OUTCOME": "AUSGANG",
    "CASE_REFERENCE": "AKTENZEICHEN",
    "PATH": "PFAD",
    "FILES": "DATEIEN",
    "RECIPIENTS": "EMPFÄNGER",
    "ATTEMPTS": "VERSUCHE",
    "NEXT_ATTEMPT_AT": "NÄCHSTER_VERSUCH",
    "LAST_REPLY": "LETZTE_ANTWORT",
    "ADDRESS": "ADRESSE",
    "REPLY": "ANTWORT",
    "QUEUE_ID": "WARTESCHLANGEN_ID",
    "UPDATED_AT": "GEÄNDERT",
    "MESSAGE_ID": "MESSAGE-ID",
    "MAIL_FROM": "ABSENDER_UMSCHLAG",
    "SIGNED": "SIGNIERT",
    "ENCRYPTED": "VERSCHLÜSSELT",
    "CREATED_AT": "EINGEREIHT",
    "RESENT": "ERNEUT_GESENDET",
    "SENT_PATH": "GESENDETE_KOPIE",
    "BCC": "BCC",
    "BCC_COPY_OF": "BCC_KOPIE_VON",
    "KEY_REFUSALS": "ABGELEHNTE_ZERTIFIKATE",
    # -- poststelle deliveries (cli/deliveries.py) ----------------------------------------------------
    "DOCUMENT_ID": "DOKUMENT",
    "RECIPIENT": "EMPFÄNGER",
    "SERVED_ON": "ZUGESTELLT_AM",
    "OVERDUE": "ÜBERFÄLLIG",
    "DISPATCHED_AT": "VERSANDT",
    "RETRIEVED_AT": "ABGEHOLT",
    "STEP": "SCHRITT",
    "KIND": "ART",
    "SHA256": "SHA256",
    # -- poststelle status (cli/status.py) ----------------------------------------------------------
    "CONNECTED": "VERBUNDEN",
    "IDLE": "WARTET_AUF_POST",
    "daemon: running, pid {pid}": "Dienst: läuft, PID {pid}",
    ", since {at}": ", seit {at}",
    ", configuration {sha}": ", Konfiguration {sha}",
    "daemon: not running": "Dienst: läuft nicht",
    " (stopped {at}: {why})": " (beendet {at}: {why})",
    "the configuration file has changed since; send SIGHUP to reload it": (
        "die Konfigurationsdatei wurde seither geändert; SIGHUP lädt sie neu"
    ),
    "messages: ": "Nachrichten: ",
    "none yet": "noch keine",
    "outbox: ": "Postausgang: ",
    "empty": "leer",
    "outbox thread: {state}, since start sent {sent}, deferred {deferred}, bounced {bounced}": (
        "Postausgang-Thread: {state}, seit dem Start gesendet {sent}, zurückgestellt {deferred}, abgewiesen {bounced}"
    ),
    "yes": "ja",
    "deemed served": "gilt als zugestellt",
    "retrieved": "abgeholt",
}

# The reason codes' words live with their German in one table (gateway.ui.reasons).
GERMAN |= {english: german for english, german in GERMAN_REASONS.items() if english not in GERMAN}

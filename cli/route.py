"""``poststelle route``: try the configured routing rules on a subject, filing nothing."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import ConfigOption, JsonOption, echo, get_config, print_json, print_table
from gateway.routing.dryrun import explain

app = typer.Typer(help="Routing rules: try them on a subject before mail arrives.", no_args_is_help=True)


@app.command("test")
def test_route(
    subject: str = typer.Argument(..., help="The subject as a sender would write it."),
    from_addr: str | None = typer.Option(None, "--from", help="Sender address, for rules with a 'from' pattern."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Show which rule takes SUBJECT, the case reference and folder, and why the other rules do not."""
    cfg = get_config(config)
    senders = [from_addr] if from_addr else []
    result = explain(subject, senders, cfg.routes, cfg.routing.unassigned, cfg.routing.folder_slash)
    if as_json:
        print_json(result.to_json())
        return
    d = result.decision
    echo(f"subject:  {result.subject}")
    echo(f"matched against: {result.matching_text}")
    if d.assigned:
        echo(f"-> rule {d.rule!r}: case {d.case_ref}  (folder {d.case_folder})")
    else:
        why = ", ".join(d.reasons)
        echo(f"-> unassigned (folder {d.case_folder}): {why}" + (f" (rule {d.rule!r})" if d.rule else ""))
    typer.echo("")
    rows = [{**t.to_json(), "taken": "yes" if t.rule == d.rule else ""} for t in result.trials]
    print_table(rows, ["rule", "taken", "outcome", "case_reference", "case_folder", "detail"])

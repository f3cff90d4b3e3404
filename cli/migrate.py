"""``poststelle migrate-store``: move the records from a SQLite ledger into the configured PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import ConfigOption, JsonOption, echo, fail, get_config, locale, print_json


def migrate_store_cmd(
    source: str = typer.Option(..., "--from", metavar="sqlite:PATH", help="The SQLite ledger to copy (read only)."),
    target: str = typer.Option(
        "postgresql", "--to", help="postgresql: the database of [storage] dsn_file (it must be empty)."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Copy every record of a stopped gateway's SQLite ledger, audit trail included, into PostgreSQL.

    One transaction: the target shows the whole ledger or nothing. The source is only
    read; its trail is checked first and not copied if it does not verify. Afterwards an
    entry ``store-migrated`` follows the copied trail, and the checks of ``audit verify``
    run against the target. Exit status 1 when anything was refused or does not verify.
    """
    from gateway.audit.verify import verify_state
    from gateway.records.actors import cli_actor
    from gateway.records.store import StoreError
    from gateway.service.migrate_store import MigrationRefused, SourceChainBroken, migrate_store

    kind, sep, path = source.partition(":")
    if kind != "sqlite" or not sep or not path:
        fail(f"--from {source!r}: give the source as sqlite:PATH (the ledger file, e.g. sqlite:/srv/ledger.sqlite3)")
    if target != "postgresql":
        fail(f"--to {target!r}: the only target is postgresql (the database of [storage] dsn_file)")
    cfg = get_config(config)
    try:
        result = migrate_store(cfg, Path(path), actor=cli_actor())
    except SourceChainBroken as exc:
        for b in exc.breaks:
            echo(f"  entry {b.seq}  {b.kind}: {b.detail}", err=True)
        fail(str(exc))
    except (MigrationRefused, StoreError) as exc:
        fail(str(exc))
    report = verify_state(cfg)
    ok = report.ok and not result.mismatches
    if as_json:
        print_json(
            {
                "ok": ok,
                "source": str(result.source),
                "target": result.target,
                "rows": result.rows,
                "source_head": {"seq": result.source_head.seq, "hash": result.source_head.hash},
                "head": {"seq": result.head.seq, "hash": result.head.hash},
                "mismatches": result.mismatches,
                "verify": report.to_json(),
            }
        )
    else:
        from cli.verify_run import print_report
        from gateway.statedir import audit_public_key_path

        echo(f"copied {result.source} -> {result.target}")
        for table, n in result.rows.items():
            echo(f"  {table:18} {n}")
        echo(f"  source head        entry {result.source_head.seq} {result.source_head.hash}")
        echo(f"  store-migrated     entry {result.head.seq} {result.head.hash}")
        for m in result.mismatches:
            echo(f"  MISMATCH {m}")
        print_report(report, audit_public_key_path(cfg), locale())
    if not ok:
        raise typer.Exit(1)

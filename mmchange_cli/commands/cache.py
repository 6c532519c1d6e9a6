"""``mmchange cache``: where mmchange's disk caches are, what they hold, and ``--clear`` to empty them."""

from __future__ import annotations

import typer

from mmchange_cli import options as opt
from mmchange_cli.console import out, print_json, table


def cache(
    which: str = typer.Argument("all", help="int8 (certified int8 exports), decoded (decoded training pairs) or all."),
    clear: bool = opt.flag("--clear", "Remove every entry of the cache(s)."),
    as_json: bool = opt.as_json(),
) -> None:
    """Show mmchange's disk caches ($MMCHANGE_CACHE, default ~/.cache/mmchange), or empty them with --clear."""
    from mmchange_core.caches import cache_usage, clear_caches

    rows = clear_caches(which) if clear else cache_usage(which)
    if as_json:
        print_json([{"name": r.name, "folder": str(r.folder), "entries": r.entries, "bytes": r.bytes,
                     "limit": r.limit, "cleared": clear} for r in rows])
        return
    title = "removed" if clear else "mmchange caches"
    out.print(table(title, ["cache", "folder", "entries", "MB", "limit (MB)"],
                    [(r.name, str(r.folder), r.entries, f"{r.bytes / 1e6:.1f}", f"{r.limit / 1e6:,.0f}") for r in rows]))


def register(app: typer.Typer) -> None:
    app.command("cache")(cache)

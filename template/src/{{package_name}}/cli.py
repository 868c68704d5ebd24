"""The command line: `migrate`, `create-admin`, `serve`, and the optional features' commands."""

from __future__ import annotations

import asyncio
import gc
import getpass
import signal
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from . import features
from ._project import PROJECT_SLUG

if TYPE_CHECKING:
    from .config import Settings

app = typer.Typer(name=PROJECT_SLUG, no_args_is_help=True, add_completion=False)


def _settings() -> Settings:
    """Settings from the environment, or a readable error naming each bad setting."""
    from pydantic import ValidationError

    from .config import Settings

    try:
        return Settings()
    except ValidationError as error:
        for problem in error.errors():
            location = ".".join(str(part) for part in problem["loc"]) or "settings"
            typer.echo(f"configuration error: {location}: {problem['msg']}", err=True)
        raise typer.Exit(2) from None


@app.command()
def migrate(
    revision: Annotated[
        str, typer.Argument(help="Target revision; every branch's head by default")
    ] = "heads",
) -> None:
    """Apply the database migrations to DATABASE_URL."""
    from .migrations import upgrade

    settings = _settings()
    upgrade(settings.database_url, revision)
    typer.echo(f"database migrated to {revision}")


@app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="Email of the admin account")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input")
    ] = False,
    promote_existing: Annotated[
        bool,
        typer.Option(
            "--promote-existing",
            help="Give the admin role to an existing account; its own password must verify",
        ),
    ] = False,
) -> None:
    """Create an account with the admin role. An existing account is refused unless
    --promote-existing is given with that account's password; the grant is audited."""
    from .users.bootstrap import AdminSetupError, ensure_admin

    settings = _settings()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            typer.echo("passwords differ", err=True)
            raise typer.Exit(1)
    try:
        outcome = asyncio.run(
            ensure_admin(settings, email, password, promote_existing=promote_existing)
        )
    except AdminSetupError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{outcome}: {email}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
) -> None:
    """Run the production server (uvicorn, one process). SIGTERM drains requests and exits 0."""
    import uvicorn

    from . import server
    from .main import create_app

    settings = _settings()
    server.return_large_blocks_to_the_system()  # a login storm's hashes leave no heap behind
    service = create_app(settings)
    # What exists now (the modules, the app) lives as long as the process: frozen out of the
    # cyclic garbage collector's generations, it is not walked again at every full collection.
    gc.collect()
    gc.freeze()
    config = uvicorn.Config(
        service,
        host=host,
        port=port,
        proxy_headers=False,  # forwarding headers are handled by ClientIPMiddleware
        server_header=False,
        access_log=False,  # RequestContextMiddleware logs each request once
        log_config=None,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        # Bounded request heads (size, and so count) and a deadline to send them: server.py.
        http=server.protocol(settings.server_head_timeout_seconds),
        h11_max_incomplete_event_size=settings.server_max_header_bytes,
        timeout_keep_alive=settings.server_keep_alive_seconds,
        limit_concurrency=settings.server_limit_concurrency,
    )
    # uvicorn re-raises the signal it stopped for once it has drained, so the process would end
    # "killed by SIGTERM"; a drained shutdown is a success, so the re-raised signal is absorbed.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: None)
    uvicorn.Server(config).run()


features.register_commands(app)

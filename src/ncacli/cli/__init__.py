"""The ``nca`` command line: a Typer app whose verbs come from :data:`ncacli.registry.VERBS`."""

from __future__ import annotations

import signal
import sys
import threading
import warnings
from typing import Any

import typer

from ncacli import __version__
from ncacli.errors import NcaError, Terminated


def _version(value: bool) -> None:
    if value:
        print(f"nca {__version__}")
        raise typer.Exit()


def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Neural Cellular Automata: train, grow, damage, measure and show self-organising patterns."""


def _register(app: typer.Typer, name: str, obj: Any) -> None:
    if isinstance(obj, typer.Typer):
        app.add_typer(obj, name=name)
    elif callable(obj):
        app.command(name)(obj)
    else:
        raise TypeError(f"{obj!r} is neither a Typer app nor a function")


def build_app() -> typer.Typer:
    from ncacli.registry import VERBS

    app = typer.Typer(
        name="nca",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    for name, obj in VERBS.items():
        _register(app, name, obj)
    return app


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"nca: warning: {message}", file=sys.stderr)


_sigterm = {"seen": False}


def _on_sigterm(signum, frame) -> None:
    _sigterm["seen"] = True
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 failure, 2 usage, 130 interrupted, 143 terminated)."""
    warnings.showwarning = _show_warning
    args = sys.argv[1:] if argv is None else list(argv)
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        return _main(args)
    _sigterm["seen"] = False
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = _main(args)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code == 130 and _sigterm["seen"]:  # Typer turns any KeyboardInterrupt into a silent exit 130
        print("nca: terminated", file=sys.stderr)
        return Terminated.exit_code
    return code


def _main(args: list[str]) -> int:
    debug = "--debug" in args
    try:
        command = typer.main.get_command(build_app())
        command.main(args, prog_name="nca", standalone_mode=True)
        return 0
    except SystemExit as exc:  # Typer's own exits: usage errors (2), Ctrl-C (130), typer.Exit
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:  # outside a verb (Typer handles it within one)
        print("nca: interrupted", file=sys.stderr)
        return 130
    except NcaError as exc:
        if debug:
            raise
        print(f"nca: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return 1
    except Exception as exc:
        if debug:
            raise
        print(f"nca: error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", file=sys.stderr)
        return 1

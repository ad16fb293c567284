"""The `scalingkit` command line: thin click commands that parse, call the library, and print."""
from __future__ import annotations

import errno
import os
import sys

import click

from scalingkit.errors import UserError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="scalingkit")
def cli():
    """Train scaling-law sweeps into a labelled cube and fit scaling laws to it."""


def _register_subcommands():
    # Each command family lives in its own module; importing them here keeps start-up cheap for --help.
    from scalingkit.cli import optimal as cli_optimal
    from scalingkit.cli import train as cli_train

    for command in cli_train.COMMANDS + cli_optimal.COMMANDS:
        cli.add_command(command)
    try:
        from scalingkit.cli import fit as cli_fit
    except ImportError:  # the statistics layer is optional only while it is being written
        return
    for command in cli_fit.COMMANDS:
        cli.add_command(command)
    from scalingkit.cli import report as cli_report

    for command in cli_report.COMMANDS:
        cli.add_command(command)


def main(argv=None):
    """Entry point: one-line errors, never a traceback (unless SCALINGKIT_DEBUG=1)."""
    _register_subcommands()
    try:
        cli.main(args=argv, prog_name="scalingkit", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except OSError as exc:  # the file system refused a path the user gave (a file where a folder goes, read-only)
        if os.environ.get("SCALINGKIT_DEBUG") or exc.errno not in FILE_SYSTEM_ERRNOS:
            _internal(exc)
        where = f" {exc.filename}" if exc.filename else " a path"
        click.echo(f"error: cannot use{where}: {exc.strerror or exc}", err=True)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        _internal(exc)
    sys.exit(0)


# errors of the file system about a path: a file where a folder goes, no permission, a read-only or full disk
FILE_SYSTEM_ERRNOS = {errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EACCES, errno.EPERM, errno.EROFS,
                      errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG, errno.ELOOP}


def _internal(exc: Exception):
    if os.environ.get("SCALINGKIT_DEBUG"):
        raise exc
    click.echo(f"internal error: {type(exc).__name__}: {exc} (SCALINGKIT_DEBUG=1 shows the traceback)", err=True)
    sys.exit(1)


if __name__ == "__main__":
    main()

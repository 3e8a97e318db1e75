"""Entry point of the ``learnae`` command.

Exit codes: 0 success; 1 a runtime failure (a service, the network, damaged
state); 2 bad input from the user (usage, config, files), always as one line
``learnae: error: <what> <fix>`` on stderr, never a traceback.
"""

from __future__ import annotations

import os
import sys

from learnae.cli import early_signals

if __name__ == "__main__" or os.path.basename(sys.argv[0]) == "learnae":  # the program, not an import
    early_signals.defer()  # first: a Ctrl-C while loading is acted on once the command can

import errno  # noqa: E402
import logging  # noqa: E402

# TensorFlow's C++ side prints start-up banners (oneDNN, CPU features) unless told not to;
# they are noise to a user. Set before anything imports TensorFlow; an explicit value wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click  # noqa: E402 - after the environment TensorFlow reads at import

from learnae import __version__  # noqa: E402
from learnae.cli import config as config_cmd  # noqa: E402
from learnae.cli import data, ipfs, key, ledger, peer, scenario  # noqa: E402
from learnae.errors import LearnaeError, UserError, only_exception  # noqa: E402
from learnae.log import configure_logging  # noqa: E402

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="learnae", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """learnae: train one neural network across equal peers, with no coordinator.

    Peers train on their own data, publish weight snapshots as IPFS CIDs,
    announce them over libp2p GossipSub, merge neighbours' snapshots by
    asynchronous averaging and sign every contribution into a verifiable ledger.

    Logging: LEARNAE_LOG=info,learnae.gossip=debug (stderr); libraries are silent unless
    named, e.g. LEARNAE_LOG=info,libp2p=warning.
    """
    configure_logging()
    if ctx.invoked_subcommand != "peer":  # `peer start` takes a deferred SIGINT itself
        early_signals.resume()


for group in (peer.group, key.group, config_cmd.group, ledger.group, data.group, ipfs.group, scenario.group):
    cli.add_command(group)


def _fail(message: str, code: int) -> None:
    click.echo(f"learnae: error: {message}", err=True)
    sys.exit(code)


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _disk_full(group: BaseExceptionGroup) -> OSError | None:
    """A full disk among the failures of several tasks: the one thing the user must fix."""
    match, _ = group.split(lambda e: isinstance(e, OSError) and e.errno in DISK_FULL)
    if match is None:
        return None
    leaves = [match]
    while isinstance(leaves[0], BaseExceptionGroup):
        leaves = list(leaves[0].exceptions)
    return leaves[0]


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map errors to one-line messages and exit codes."""
    try:
        _main(argv)
    finally:
        early_signals.take()  # whatever the command did, Ctrl-C is Ctrl-C again afterwards


def _main(argv: list[str] | None) -> None:
    try:
        try:
            rv = cli.main(args=argv, prog_name="learnae", standalone_mode=False)
        except BaseExceptionGroup as group:  # trio nurseries wrap what a task raised
            inner = only_exception(group) or _disk_full(group)
            if inner is None:
                raise
            raise inner from None
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(0)
    except click.UsageError as exc:
        where = f"learnae {exc.ctx.command_path.partition(' ')[2]}".strip() if exc.ctx else "learnae"
        msg = exc.format_message().replace("\n", " ")
        _fail(f"{msg} (see '{where} --help')", 2)
    except click.ClickException as exc:  # e.g. BadParameter raised inside a command
        _fail(exc.format_message().replace("\n", " "), exc.exit_code)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except UserError as exc:
        _fail(str(exc).replace("\n", " "), 2)
    except LearnaeError as exc:
        # A runtime failure: its traceback goes to the log at debug level (LEARNAE_LOG=learnae.cli=debug).
        logging.getLogger("learnae.cli").debug("%s failed", " ".join(sys.argv[1:3]), exc_info=True)
        _fail(str(exc).replace("\n", " "), 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        where = f"the disk holding {exc.filename}" if exc.filename else "the disk"
        _fail(f"{where} is full ({exc.strerror}): free some space and run the command again "
              "(a peer resumes from its last checkpoint, its ledger intact)", 1)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()

"""Entry point of the ``learnae`` command.

Exit codes: 0 success; 1 a runtime failure (a service, the network, damaged
state); 2 bad input from the user (usage, config, files), always as one line
``learnae: error: <what> <fix>`` on stderr, never a traceback.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys

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
def cli() -> None:
    """learnae: train one neural network across equal peers, with no coordinator.

    Peers train on their own data, publish weight snapshots as IPFS CIDs,
    announce them over libp2p GossipSub, merge neighbours' snapshots by
    asynchronous averaging and sign every contribution into a verifiable ledger.

    Logging: LEARNAE_LOG=info,learnae.gossip=debug (stderr); libraries are silent unless
    named, e.g. LEARNAE_LOG=info,libp2p=warning.
    """
    configure_logging()


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


def _take_sigint() -> None:
    """Make SIGINT (Ctrl-C, ``kill -INT``) the graceful stop it is documented to be, always.

    A shell without job control starts a background job (``learnae peer start &`` in a
    script, a CI step) with SIGINT ignored, and Python leaves an inherited SIG_IGN alone:
    such a peer, server or scenario runner would never leave on SIGINT.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map errors to one-line messages and exit codes."""
    _take_sigint()
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

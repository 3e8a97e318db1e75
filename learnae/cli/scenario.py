"""`learnae scenario`: multi-peer simulations from scenario YAML files."""

from __future__ import annotations

from pathlib import Path

import click

from learnae.cli.common import emit_json, format_option
from learnae.fsutil import prepare_output

__all__ = ["group"]

_FILE = click.Path(dir_okay=False, path_type=Path)


@click.group(name="scenario")
def group() -> None:
    """Simulate swarms of real peers from scenario YAML files.

    A scenario names the data and its partition, the model, the peers, the
    network conditions, a timeline of faults (kill, restart, pause, partition,
    heal, join, leave, slow, attack) and the expectations a run must meet.
    Shipped scenarios are in scenarios/; the file format is in docs/scenarios.md.
    """


@group.command()
@click.argument("file", type=_FILE)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for report.json, accuracy.png, report.md, ledger.car and the peers' data dirs "
                   "[default: scenario-out/<name>-<time>].")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def run(file: Path, out: Path | None, quiet: bool) -> None:
    """Run FILE: start real peers on 127.0.0.1, drive its timeline, write a report.

    Exits 0 when every expectation holds, 1 otherwise. Ctrl-C stops the peers,
    writes the partial report (end_reason: interrupted) and exits 130.
    """
    from learnae.scenario.runner import run_scenario
    from learnae.scenario.schema import load_scenario

    scenario = load_scenario(file)
    report = run_scenario(scenario, out, source=str(file), progress=not quiet)
    raise SystemExit(0 if report.ok else 1)


@group.command()
@click.argument("file", type=_FILE)
@format_option
def validate(file: Path, fmt: str) -> None:
    """Check FILE without running it; print its peers and timeline."""
    from learnae.scenario.schema import load_scenario, plan

    p = plan(load_scenario(file))
    if fmt == "json":
        emit_json({"name": p.scenario.name, "peers": [q.model_dump() for q in p.peers],
                   "timeline": [item.to_json() for item in p.timeline]})
        return
    s = p.scenario
    click.echo(f"{file}: valid. {s.name}: {len(p.peers)} peers, {s.dataset} split {s.partition}, model {s.model}, "
               f"up to {s.duration:g}s")
    for item in p.timeline:
        rest = {k: v for k, v in item.to_json().items() if k not in ("at", "action")}
        click.echo(f"  {item.at:>7.1f}s  {item.action:<9} {' '.join(f'{k}={v}' for k, v in rest.items())}")
    for e in s.expect:
        click.echo(f"  expect  {e.text}")


@group.command()
@click.argument("outs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--plot", "plot_path", type=_FILE, default=Path("compare.png"), show_default=True,
              help="Where to write the combined accuracy plot.")
@format_option
def compare(outs: tuple[Path, ...], plot_path: Path, fmt: str) -> None:
    """Compare finished runs (their --out directories) side by side."""
    from learnae.scenario.compare import compare_runs

    plot_path = prepare_output(plot_path, what="--plot")
    table, rows = compare_runs(list(outs), plot_path)
    if fmt == "json":
        emit_json([row.to_json() for row in rows])
    else:
        click.echo(table)
        click.echo(f"plot: {plot_path}")


@group.command(name="from-ledger")
@click.argument("car", type=_FILE)
@click.option("-o", "--output", type=_FILE, required=True, help="The scenario YAML to write.")
@click.option("--like", type=_FILE, default=None,
              help="A scenario whose dataset, model and settings to copy (the ledger records only the timeline).")
def from_ledger(car: Path, output: Path, like: Path | None) -> None:
    """Turn a finished run's ledger (a CAR file) into a scenario that replays its timeline."""
    from learnae.scenario.replay import write_replay

    output = prepare_output(output, what="-o")
    summary = write_replay(car, output, like=like)
    click.echo(f"wrote {output}: {summary}")


@group.command(name="compose")
@click.argument("file", type=_FILE)
@click.option("-o", "--output", type=_FILE, default=None, help="Write here instead of stdout.")
@click.option("--kubo", is_flag=True, help="Add a Kubo service and use it as the peers' block store.")
def compose_cmd(file: Path, output: Path | None, kubo: bool) -> None:
    """Generate a docker compose file that runs FILE's peers as containers."""
    from learnae.scenario.compose import compose_yaml
    from learnae.scenario.schema import load_scenario, plan

    text = compose_yaml(plan(load_scenario(file)), kubo=kubo)
    if output is None:
        click.echo(text, nl=False)
    else:
        prepare_output(output, what="-o").write_text(text)
        click.echo(f"wrote {output}", err=True)

"""The ``mutomo`` command line."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mutomo import __version__
from mutomo.app.bound import bound, share_lines
from mutomo.app.check import check
from mutomo.app.demo import run_demo
from mutomo.app.run import run
from mutomo.app.sweep import run_sweep
from mutomo.config.build import (
    build_design,
    build_problem,
    comparison_designs,
    evaluation_settings,
    settings_from,
    with_sizes,
)
from mutomo.config.sanity import before_run
from mutomo.config.schema import RunConfig, builtin_configs, load_config, parse_config
from mutomo.design.base import Design
from mutomo.design.describe import DESIGN_KINDS, design_from_description
from mutomo.errors import (
    ConfigError,
    DesignFileError,
    MutomoError,
    MutomoWarning,
    RunDirectoryError,
    naming_the_source,
)
from mutomo.io.files import RERUN, read_json, writable_dir, writable_file
from mutomo.io.gdml import PANEL_MATERIAL, require_pyg4ometry, write_gdml
from mutomo.optimise.evaluate import (
    TEST_STREAM,
    metrics_json,
    observe_variation,
    paired,
    summarise,
    systematics_json,
)
from mutomo.optimise.loop import TrainingSettings
from mutomo.optimise.metric_text import metric_label, value_text
from mutomo.optimise.problem import Problem
from mutomo.optimise.systematics import VARIATIONS
from mutomo.optimise.verdict import (
    chance_lines,
    no_information,
    statistic_lines,
    systematics_envelope,
    systematics_lines,
)
from mutomo.plotting.landscape import write_landscape_figures
from mutomo.plotting.run_report import write_run_report
from mutomo.reco.methods import VOXEL_METHODS
from mutomo.reco.momentum_options import MOMENTUM_OPTIONS
from mutomo.runtime import tune_allocator
from mutomo.studies.baselines import METHODS
from mutomo.studies.landscape import (
    LandscapeSettings,
    budget_front,
    check_front,
    landscape_lines,
    observe_designs,
    run_landscape,
    save_landscape,
)
from mutomo.tasks import TASK_KINDS


def _print_evaluations(evaluations: dict) -> None:
    """One line per design and readout: every metric with its error, then the paired differences."""
    for section in ("designs", "paired"):
        print("design" if section == "designs" else "paired difference (same volumes and muons)")
        for name, entry in evaluations[section].items():
            for readout in evaluations["readouts"]:
                metrics = entry.get(readout, {})
                text = "  ".join(f"{metric_label(m)} {value_text(m, ve, '+-')}" for m, ve in metrics.items())
                print(f"  {name:28s} {readout:15s} {text}")
    _print_systematics(evaluations)


def _print_systematics(evaluations: dict) -> None:
    """The paired differences under each systematic variation, then the verdict of each comparison."""
    record = evaluations.get("systematics")
    if not record or not record.get("variations"):
        return
    metric = record["metric"]
    print(f"paired difference under each systematic variation ({record['readout']}, {metric_label(metric)})")
    for variation, entry in record["variations"].items():
        for pair, metrics in entry["paired"].items():
            value = value_text(metric, metrics.get(metric, [None, None]), "+-")
            print(f"  {variation:16s} {pair:34s} {value}   ({entry['summary']})")
    for line in systematics_lines(evaluations):
        print(line)


def _list_tasks() -> None:
    """The built-in benchmarks, then every choice a configuration names, from its registry."""
    for name, path in builtin_configs().items():
        config = load_config(path)
        t = config.task
        print(f"{name}: {t.kind} ({t.inference}); designs: {', '.join(config.designs)}")
        print(f"    {config.description}")
        print(f"    {_budget_and_designs(config)}")
    print(
        'run one with `mutomo optimise NAME`; start your own with `extends = "NAME"` (or a file of your own) in a '
        "configuration, and see what it would do with `mutomo check FILE`"
    )
    print("\ntask kinds (task.kind) and their inferences (task.inference):")
    for kind, cls in TASK_KINDS.items():
        print(f"    {kind}: {', '.join(cls.inferences)}")
    print("voxel methods:")
    for entry in VOXEL_METHODS.values():
        print(f"    {entry.name}: {entry.summary}")
    print("momentum options (task.momentum):")
    for option in MOMENTUM_OPTIONS.values():
        print(f"    {option.name}: {option.summary}")
    print(f"design kinds: {', '.join(DESIGN_KINDS)}; gradient-free methods (sweep.methods): {', '.join(METHODS)}")
    print("systematic variations (evaluation.systematics.variations, training.systematics; 'all': every one):")
    for variation in VARIATIONS.values():
        print(f"    {variation.name}: {variation.summary}")


def _budget_and_designs(config: RunConfig) -> str:
    """One line: the budget and each named design's cost and panels (``mutomo tasks``)."""
    problem = build_problem(config)
    costs = []
    for name in config.designs:
        design = problem.design(name, (), None, what=f"designs.{name}")
        with torch.no_grad():
            d = design.detector()
            cost = float(design.cost())
        costs.append(f"{name} {d.n_panels('above')}+{d.n_panels('below')} panels, cost {cost:.5g}")
    dc = config.design
    if dc.fixed_budget:
        budget = f"fixed {dc.budget:.5g}" if dc.budget is not None else f"fixed at the start's ({dc.start}) cost"
    else:
        budget = f"soft {dc.budget:.5g}" if dc.budget is not None else "none"
    return f"budget {budget}; start {dc.start}; " + "; ".join(costs)


EXIT_CODES = """exit codes: 0 success; 2 input refused (the message names the file, field or row);
1 failure (a bug: rerun with --debug and report the traceback); 130 interrupted (a run resumes
from its last checkpoint when the same command is given again)."""


def _version() -> str:
    try:
        version = importlib.metadata.version("mutomo")
    except importlib.metadata.PackageNotFoundError:
        version = __version__
    return f"mutomo {version} (torch {torch.__version__}, python {sys.version.split()[0]})"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mutomo",
        description="Differentiable muon tomography detector design",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version(), help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="simulate cosmic muons through slabs of several materials", epilog=EXIT_CODES)
    demo.add_argument("--output", type=Path, default=Path("demo_output"), help="folder for the figure")
    demo.add_argument("--muons", type=int, default=200_000, help="muons per material (>= 1)")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    sub.add_parser(
        "tasks",
        help="list the built-in benchmarks (scene, task and human designs) and every choice a configuration names",
        epilog=EXIT_CODES,
    )
    chk = sub.add_parser(
        "check",
        help="validate a configuration and print what a run would do: the merged configuration, budget and "
        "designs, muons, volumes and the headline metric's error, warnings, an estimated run time; draw a scene "
        "preview",
        description="Validate CONFIG and build everything a run builds (refusing what a run would refuse), then "
        "print what `mutomo optimise` would do, without doing it: the merged configuration (after `extends`), "
        "the budget and each named design's cost, the muons per test volume and per training epoch, the test "
        "and calibration volumes and roughly what error they give on the headline metric, the sanity "
        "warnings (implausible densities, designs that do not fit the scene, too few muons per voxel), and a "
        "run time estimated from one timed training batch and one timed test volume on this machine. The "
        "scene preview draws volumes of the scene (with and without the target, or two fill heights) in side "
        "view with every named design's panels around them.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chk.add_argument("config", help="configuration file, or the name of a built-in benchmark (see `mutomo tasks`)")
    chk.add_argument(
        "--figure",
        type=Path,
        default=Path("scene_preview.png"),
        metavar="PNG",
        help="where to draw the scene preview (PNG, and an SVG beside it; default scene_preview.png)",
    )
    chk.add_argument("--no-figure", action="store_true", help="skip the scene preview")
    chk.add_argument("--no-timing", action="store_true", help="skip the short timing (and the run-time estimate)")
    opt = sub.add_parser(
        "optimise",
        help="optimise a detector: a TOML/YAML configuration or a built-in benchmark",
        epilog=EXIT_CODES,
    )
    opt.add_argument("config", help="configuration file, or the name of a built-in benchmark (see `mutomo tasks`)")
    opt.add_argument("--output", type=Path, default=None, help="run directory (default: output.directory)")
    opt.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint in the run directory")
    opt.add_argument("--no-report", action="store_true", help="skip the figures and report.html")
    ev = sub.add_parser(
        "evaluate",
        help="evaluate a design (smooth and physical) on a problem's test volumes, paired against the "
        "configuration's evaluation.compare designs",
        epilog=EXIT_CODES,
    )
    ev.add_argument("design", help="design JSON file, or the name of a design of the configuration")
    ev.add_argument("--config", default="ladle_furnace", help="configuration file or built-in benchmark")
    ev.add_argument("--json", type=Path, default=Path("evaluation.json"), help="where to write the metrics")
    bnd = sub.add_parser(
        "bound",
        help="how far designs are from the best possible: the start, the compared designs and --design "
        "evaluated beside the ideal detector (with and without measured momenta), no training",
        epilog=EXIT_CODES,
    )
    bnd.add_argument("config", help="configuration file, or the name of a built-in benchmark (see `mutomo tasks`)")
    bnd.add_argument(
        "--design",
        action="append",
        default=[],
        metavar="NAME|FILE|LABEL=FILE",
        help="a further design to judge (a name under [designs], a design JSON file such as a run's "
        "design_final.json, or LABEL=FILE to give it a name); repeatable",
    )
    bnd.add_argument("--json", type=Path, default=Path("bound.json"), help="where to write the result")
    bnd.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="folder keeping every design's observations; a repeated bound of the same configuration "
        "observes only the designs it has not seen (e.g. one trained since)",
    )
    rep = sub.add_parser("report", help="(re)write the figures and report.html of a run directory", epilog=EXIT_CODES)
    rep.add_argument("run_dir", type=Path, help="a run directory written by `mutomo optimise`")
    exp = sub.add_parser(
        "export",
        help="write a run's design and one of its test volumes as GDML for Geant4 (needs pyg4ometry)",
        epilog=EXIT_CODES,
    )
    exp.add_argument("run_dir", type=Path, help="a run directory written by `mutomo optimise`")
    exp.add_argument("--gdml", type=Path, required=True, metavar="FILE", help="the GDML file to write (lengths in mm)")
    exp.add_argument(
        "--design",
        default="optimised",
        metavar="NAME|FILE",
        help="optimised (design_final.json, the default), best_validated (design_best.json), initial, another "
        "design the run evaluated (see evaluations.json), or a design JSON file",
    )
    exp.add_argument(
        "--volume-index",
        type=int,
        default=0,
        metavar="N",
        help="which test volume of the run's scene (>= 0; a target object is forced present if the scene has one)",
    )
    exp.add_argument(
        "--panel-thickness", type=float, default=1e-3, metavar="M", help="thickness of the panel boxes (m, > 0)"
    )
    exp.add_argument(
        "--panel-material",
        default=None,
        metavar="G4_NAME",
        help="Geant4 NIST material of the panels (default: plastic scintillator)",
    )
    exp.add_argument(
        "--margin", type=float, default=0.1, metavar="M", help="air around everything in the world box (m, > 0)"
    )
    land = sub.add_parser(
        "landscape",
        help="train K starts in one pass and list the distinct near-optimal designs (landscape.json + figures)",
        description="Train K starting designs together (one simulation serves all K), evaluate each on the "
        "configuration's test volumes with the human designs, group the finished designs into distinct solutions "
        "and keep those within the tolerance of the best; optionally the front of the best metric against budget "
        "(free panels) or against the number of hodoscope modules.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    land.add_argument("config", help="configuration file, or the name of a built-in benchmark (see `mutomo tasks`)")
    land.add_argument("--starts", type=int, required=True, metavar="K", help="number of starting designs (>= 1)")
    land.add_argument(
        "--output",
        type=Path,
        default=None,
        help="folder for landscape.json and the figures (default: output.directory + '_landscape')",
    )
    land.add_argument("--seed", type=int, default=0, help="seeds the starting designs")
    land.add_argument(
        "--jitter",
        type=float,
        default=None,
        metavar="M",
        help="start around the configuration's start design with this standard deviation (m, > 0) instead of "
        "uniformly within the region",
    )
    _add_size_arguments(land)
    land.add_argument(
        "--threshold", type=float, default=0.05, metavar="M", help="grouping distance between designs (m, > 0)"
    )
    land.add_argument(
        "--tolerance-sigma",
        type=float,
        default=2.0,
        metavar="S",
        help="near-optimal within S standard errors of the paired difference to the best (0 < S <= 10; 0: off)",
    )
    land.add_argument(
        "--tolerance-fraction",
        type=float,
        default=0.10,
        metavar="F",
        help="near-optimal within the fraction F of the best value (0 < F < 1; 0: off)",
    )
    land.add_argument(
        "--budgets",
        type=float,
        nargs="*",
        default=(),
        metavar="B",
        help="budgets (> 0) of a budget front, trained in one more stacked pass (fixed-budget designs only)",
    )
    land.add_argument(
        "--modules",
        type=int,
        nargs="*",
        default=(),
        metavar="K",
        help="module counts (integers >= 2) of a module-count front: K modules of a hodoscope design each, tiled "
        "then drawn at random, against the tiled placement (hodoscope designs only)",
    )
    land.add_argument(
        "--front-starts", type=int, default=4, metavar="N", help="starts per point (budget or K) of the front (>= 1)"
    )
    sweep = sub.add_parser(
        "sweep",
        help="run a landscape's starts, a budget front and gradient-free baselines as Ray trials (landscape.json)",
        description="Run the independent trials of the configuration's [sweep] table (gradient runs from "
        "`starts` starts, `front_starts` per budget of `budgets` or per module count of `modules`, `methods` x "
        "`method_seeds` gradient-free searches) "
        "as Ray tasks, on this machine (nothing to set up) or on a Ray cluster (--address). Each trial checkpoints; "
        "one whose worker dies is rerun and resumes; one that fails is reported and the others go on. Running the "
        "same command again finishes only what is missing. The finished designs are judged on the physical "
        "evaluation with the human designs: landscape.json, trials.json, designs/ (the near-optimal designs), "
        "figures and report.html.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sweep.add_argument("config", help="configuration file, or the name of a built-in benchmark (see `mutomo tasks`)")
    sweep.add_argument(
        "--address",
        default=None,
        metavar="HOST:PORT",
        help="an existing Ray cluster (HOST:PORT, ray://HOST:PORT or auto); the sweep folder must be on storage "
        "every node sees. Default: a local Ray on this machine",
    )
    sweep.add_argument("--workers", type=int, default=None, metavar="N", help="local Ray CPUs (default: sweep.workers)")
    sweep.add_argument(
        "--output", type=Path, default=None, help="the sweep's folder (default: output.directory + '_sweep')"
    )
    _add_size_arguments(sweep)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The ``mutomo`` command line's parser (the docs generate the command-line reference from it)."""
    return _parser()


def _add_size_arguments(parser: argparse.ArgumentParser) -> None:
    """Training and evaluation sizes that override the configuration's (landscape, sweep)."""
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the configuration's)")
    parser.add_argument(
        "--volumes", type=int, default=None, help="training volumes per epoch (even, >= 4; default: configuration's)"
    )
    parser.add_argument(
        "--muons", type=int, default=None, help="training muons per volume (>= 10; default: configuration's)"
    )
    parser.add_argument(
        "--eval-volumes", type=int, default=None, help="test volumes of the evaluation (>= 4; default: configuration's)"
    )


SIZE_FLAGS = {"epochs": ("--epochs", 1), "volumes_per_epoch": ("--volumes", 4), "muons_per_volume": ("--muons", 10)}
"""Each training size's command-line flag and least value."""


def _size_overrides(args: argparse.Namespace) -> dict[str, int]:
    """The training sizes given on the command line, checked."""
    given = {"epochs": args.epochs, "volumes_per_epoch": args.volumes, "muons_per_volume": args.muons}
    for key, (flag, least) in SIZE_FLAGS.items():
        if given[key] is not None and given[key] < least:
            raise MutomoError(f"{flag} must be >= {least}; got {given[key]}")
    if args.volumes is not None and args.volumes % 2:
        raise MutomoError(f"--volumes must be even (volumes are drawn in pairs); got {args.volumes}")
    if args.eval_volumes is not None and args.eval_volumes < 4:
        raise MutomoError(f"--eval-volumes must be >= 4; got {args.eval_volumes}")
    return {k: v for k, v in given.items() if v is not None}


def _landscape(args: argparse.Namespace) -> None:
    from dataclasses import replace

    settings = LandscapeSettings.from_options(args)
    config = load_config(args.config)
    with naming_the_source(args.config):
        problem = build_problem(config)
        template = build_design(config, problem)
        humans = comparison_designs(config, problem, template.budget)
        evaluation_settings(config).check_triggers({config.design.start: template, **humans})
        _warn(before_run(config, problem))
    try:
        check_front(template, settings)
    except MutomoError as exc:
        raise ConfigError(f"{args.config}: --{exc}") from None
    base = settings_from(config, problem)
    training: TrainingSettings = with_sizes(replace(base, validation_volumes=0), _size_overrides(args))
    evaluation = evaluation_settings(config)
    if args.eval_volumes is not None:
        evaluation = replace(evaluation, n_volumes=args.eval_volumes)
    output = args.output if args.output is not None else Path(f"{config.output.directory}_landscape")
    output = writable_dir(output, "--output")
    start = time.perf_counter()
    result = run_landscape(problem, template, training, evaluation, settings, humans)
    if settings.front_points:
        result["front"] = budget_front(problem, template, training, evaluation, settings, humans)
    result["made_for"] = problem.made_for
    figures = save_landscape(output, result)[1:] + write_landscape_figures(output, result, problem.scene.box)
    print("\n".join(landscape_lines(result)))
    print(f"landscape written to {output / 'landscape.json'}; also {', '.join(str(f) for f in figures)}")
    print(f"{time.perf_counter() - start:.0f} s")


def _warn(lines: list[str]) -> None:
    """Print each warning of :mod:`mutomo.config.sanity` or :mod:`mutomo.optimise.verdict`."""
    for line in lines:
        print(f"warning: {line}", file=sys.stderr)


def _optimise(args: argparse.Namespace) -> None:

    config = load_config(args.config)
    run_dir = args.output if args.output is not None else Path(config.output.directory)
    start = time.perf_counter()
    with naming_the_source(args.config):
        _warn(before_run(config, build_problem(config)))
        evaluations = run(config, run_dir, resume=not args.fresh)
    _print_evaluations(evaluations)
    _warn(chance_lines(evaluations) + statistic_lines(evaluations))
    if not args.no_report:
        print(f"report: {write_run_report(run_dir)}")
    print(f"run directory {run_dir}; {time.perf_counter() - start:.0f} s")


def _evaluate(args: argparse.Namespace) -> None:

    config = load_config(args.config)
    with naming_the_source(args.config):
        problem = build_problem(config)
        design = problem.design(args.design, (), None, what="design")
        others = {k: d for k, d in comparison_designs(config, problem, None).items() if k != args.design}
        settings = evaluation_settings(config, problem)
        settings.check_triggers({args.design: design, **others})
    writable_file(args.json, "--json")
    names, designs = [args.design, *others], [design, *others.values()]
    # The configuration's evaluation.compare designs on the same volumes and muons: paired differences.
    obs = observe_designs(designs, problem, settings)
    result: dict[str, Any] = {
        "readouts": list(obs[0].test),
        "designs": {
            name: {**metrics_json(summarise(problem, o)), "design": d.describe()}
            for name, d, o in zip(names, designs, obs, strict=True)
        },
        "paired": {
            f"{args.design} - {name}": metrics_json(paired(problem, obs[0], o))
            for name, o in zip(names[1:], obs[1:], strict=True)
        },
    }
    result["task"] = {
        "kind": problem.task.kind,
        "inference": problem.task.inference,
        "momentum": problem.momentum.name,
        "exposure_s": problem.exposure_s,
        "reference": getattr(problem.task, "reference", None),
        "statistic": getattr(problem.task, "statistic", None),
        "no_information": no_information(problem.task.kind, obs[0]),
    }
    if settings.systematics:  # every design again under each variation, on the same volumes and muons
        under = {
            v.name: {name: observe_variation(d, problem, settings, v) for name, d in zip(names, designs, strict=True)}
            for v in settings.systematics
        }
        pairs = [(args.design, name) for name in names[1:]]
        record = systematics_json(problem, settings, under, pairs)
        result["systematics"] = record
        record["envelope"] = systematics_envelope(result)
    _print_evaluations(result)
    _warn(chance_lines(result) + statistic_lines(result))
    args.json.write_text(json.dumps(result, indent=1))
    print(f"metrics written to {args.json}")


def _bound(args: argparse.Namespace) -> None:
    config = load_config(args.config)
    with naming_the_source(args.config):
        result = bound(config, args.design, args.json, cache=args.cache)
    _print_evaluations(result)
    print("\n".join(share_lines(result)))
    print(f"written to {args.json}")


RUN_DESIGNS = {"optimised": "design_final.json", "best_validated": "design_best.json", "initial": "design_initial.json"}
"""Designs a run directory keeps as files, by the name its evaluations give them."""


def load_design_description(description: Any, source: str) -> Design:
    """The design of a description written by a run (:meth:`Design.describe`'s JSON, panels or
    hodoscopes), through :func:`~mutomo.design.describe.design_from_description`.
    Raises :class:`DesignFileError` naming ``source``."""
    if not isinstance(description, dict):
        raise DesignFileError(f"{source}: a design description must be a JSON object; got {type(description).__name__}")
    try:
        return design_from_description(description)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise DesignFileError(f"{source}: not a design description ({type(exc).__name__}: {exc})") from None


def _run_design(run_dir: Path, name: str, problem: Problem) -> Design:
    """Design ``name`` of a run directory (see ``mutomo export --design``)."""
    if name in RUN_DESIGNS:
        path = run_dir / RUN_DESIGNS[name]
        return load_design_description(read_json(path, RERUN), str(path))
    evaluations = run_dir / "evaluations.json"
    evaluated = read_json(evaluations, RERUN).get("designs", {}) if evaluations.exists() else {}
    if name in evaluated and isinstance(evaluated[name], dict) and "design" in evaluated[name]:
        return load_design_description(evaluated[name]["design"], f"{evaluations} (designs.{name}.design)")
    path = Path(name)
    if not path.is_file():
        names = sorted({n for n, f in RUN_DESIGNS.items() if (run_dir / f).exists()} | set(evaluated))
        raise DesignFileError(f"--design {name}: neither a design of the run {names} nor a design file")
    try:
        description = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DesignFileError(f"design file {path}: unreadable ({exc})") from None
    if isinstance(description, dict) and ("bounds" in description or "kind" in description):  # by describe()
        made_for = description.get("made_for")
        if isinstance(made_for, dict) and made_for.get("fingerprint") != problem.made_for["fingerprint"]:
            warnings.warn(
                MutomoWarning(
                    f"design file {path}: design made for {made_for.get('problem')}, exported with a volume of "
                    f"{problem.made_for['problem']}"
                ),
                stacklevel=2,
            )
        return load_design_description(description, f"design file {path}")
    return problem.design(str(path), (), None, what="--design")  # a hand-written design file


def _export(args: argparse.Namespace) -> None:

    if not args.run_dir.is_dir():
        raise RunDirectoryError(f"{args.run_dir}: no such run directory")
    if args.volume_index < 0:
        raise MutomoError(f"--volume-index must be >= 0; got {args.volume_index}")
    writable_file(args.gdml, "--gdml")
    require_pyg4ometry()  # refuse before anything is built
    source = str(args.run_dir / "config.json")
    config = parse_config(read_json(args.run_dir / "config.json", RERUN), source)
    with naming_the_source(source):
        problem = build_problem(config)
    design = _run_design(args.run_dir, args.design, problem)
    scene = problem.scene
    target = any(o.role == "target" and o.probability > 0 for o in scene.spec.objects)
    key = (config.evaluation.seed, TEST_STREAM, args.volume_index)
    volume = scene.sample(key, present=True if target else None).volume
    with torch.no_grad():
        detector = design.detector()
    path = write_gdml(
        args.gdml,
        detector,
        volume,
        panel_thickness=args.panel_thickness,
        panel_material=args.panel_material or PANEL_MATERIAL,
        margin=args.margin,
    )
    print(
        f"GDML written to {path}: design {args.design} ({detector.n_panels('above')} panels above, "
        f"{detector.n_panels('below')} below), test volume {args.volume_index} (key {key})"
    )


def _dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.command == "demo":
        if args.muons < 1:
            raise MutomoError(f"--muons must be >= 1; got {args.muons}")
        run_demo(args.output, args.muons, args.seed)
        return

    if args.command in ("optimise", "evaluate", "bound", "landscape", "sweep"):
        tune_allocator()  # loops of steps: reuse freed memory instead of page-faulting it in again
    if args.command == "tasks":
        _list_tasks()
    elif args.command == "check":
        check(load_config(args.config), args.config, None if args.no_figure else args.figure, not args.no_timing)
    elif args.command == "optimise":
        _optimise(args)
    elif args.command == "evaluate":
        _evaluate(args)
    elif args.command == "bound":
        _bound(args)
    elif args.command == "landscape":
        _landscape(args)
    elif args.command == "sweep":
        run_sweep(
            args.config,
            address=args.address,
            workers=args.workers,
            output=args.output,
            overrides=_size_overrides(args),
            eval_volumes=args.eval_volumes,
        )
    elif args.command == "report":
        if not (args.run_dir / "evaluations.json").exists():
            raise RunDirectoryError(f"{args.run_dir}: not a finished run directory (no evaluations.json)")

        print(f"report: {write_run_report(args.run_dir)}")
    elif args.command == "export":
        _export(args)


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    """Print a :class:`MutomoWarning` as one ``warning:`` line; others as Python prints them."""
    if isinstance(category, type) and issubclass(category, MutomoWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 success, 2 refused input, 1 failure,
    130 interrupted). No traceback is printed unless ``--debug`` is given."""
    previous, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        return _main(argv)
    finally:
        warnings.showwarning = previous


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2), already printed
        return int(exc.code or 0)
    try:
        _dispatch(args, parser)
    except MutomoError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted; a run resumes from its last checkpoint when the same command is given again", file=sys.stderr
        )
        return 130
    except Exception as exc:  # a failure that is not the input's fault: say so, keep the traceback for --debug
        if args.debug:
            traceback.print_exc()
        print(
            f"error: mutomo failed ({type(exc).__name__}: {exc}); this is a bug, not your input: "
            "rerun with --debug and report the traceback",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

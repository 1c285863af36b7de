"""The ``captum-regadv`` command line: argument parsing and dispatch only.

``captum-regadv explain`` explains a dataset of real images (or 3-D
volumes: NIfTI files, DICOM series) with a
TorchScript, ``torch.export`` (``.pt2``) or ``package.module:factory``
model; the work is done by :mod:`captum_regadv.dataset` (documented in
:mod:`captum_regadv.dataset_run`), the file handling by
:mod:`captum_regadv.fileio`. ``captum-regadv benchmark`` runs the paper's
Table 1 benchmark (:mod:`captum_regadv.benchmark.runner`, imported only
when that subcommand is used).

Exit status: 0 success, 1 some inputs failed (reported, skipped), 2 usage
or setup error (bad model, device, inputs or output folder) before any work.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import sys
from types import ModuleType
from typing import Any, Callable, Optional, Sequence

__all__ = ["build_parser", "main"]

PROG = "captum-regadv"
_BENCHMARK_MODULE = "captum_regadv.benchmark.runner"

# (flag, attribute() keyword, type, metavar, help); checked here so that a bad
# value is a usage error, not a failure of every input.
_METHOD_OPTIONS: tuple[tuple[str, str, str, str, str], ...] = (
    ("--steps", "steps", "positive_int", "N", "phase-1 optimisation steps"),
    ("--phase2-steps", "phase2_steps", "nonnegative_int", "N",
     "phase-2 optimisation steps, 0 skips phase 2"),
    ("--sparsity-weight", "sparsity_weight", "nonnegative_float", "X",
     "weight alpha of the mean soft support"),
    ("--tv-weight", "tv_weight", "nonnegative_float", "X",
     "weight beta of the total variation of the support"),
    ("--lr", "lr", "positive_float", "X", "phase-1 step size, well below --epsilon"),
    ("--epsilon", "epsilon", "nonnegative_float", "X",
     "change below which an element counts as unchanged"),
    ("--gamma", "gamma", "positive_float", "X", "steepness of the soft support"),
    ("--refine-rounds", "refine_rounds", "nonnegative_int", "N",
     "rounds of the refinement (rank, prune, polish); 0 switches it off"),
    ("--refine-steps", "refine_steps", "nonnegative_int", "N",
     "phase-2 updates inside the pruned mask per refinement round"),
    ("--shrink-rate", "shrink_rate", "fraction", "X",
     "share of the mask released per destroyed phase-2 step; 0 switches it off"),
    ("--patience", "patience", "positive_int", "N",
     "per-example early stopping after N steps without improvement"),
    ("--search-steps", "search_steps", "nonnegative_int", "N",
     "weight search: an input still classified after its explanation is explained "
     "again with the regulariser weights x0.1, x0.01, ..., up to N times; 0 switches "
     "the search off"),
)


def _library_defaults() -> dict[str, Any]:
    from .regularized_adversarial import RegularizedAdversarial

    params = inspect.signature(RegularizedAdversarial.attribute).parameters
    return {name: p.default for name, p in params.items()}


def _number(kind: Callable[[str], float], minimum: float, strict: bool) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)`` that is >= (or > when ``strict``) ``minimum``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < minimum or (strict and value == minimum):
            relation = ">" if strict else ">="
            raise argparse.ArgumentTypeError(f"must be {relation} {minimum:g}, got {text}")
        return value

    return parse


def _fraction(text: str) -> float:
    """An argparse type: a number in [0, 1)."""
    value = float(_number(float, 0.0, strict=False)(text))
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be < 1, got {text}")
    return value


_NUMBER_TYPES: dict[str, Callable[[str], Any]] = {
    "positive_int": _number(int, 0, strict=True),
    "nonnegative_int": _number(int, 0, strict=False),
    "positive_float": _number(float, 0.0, strict=True),
    "nonnegative_float": _number(float, 0.0, strict=False),
    "fraction": _fraction,
}
_positive_int = _NUMBER_TYPES["positive_int"]


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"must be finite numbers, got {text}")
    return values


def _positive_floats(text: str) -> tuple[float, ...]:
    values = _floats(text)
    if not all(v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return values


def _target(text: str) -> int | str:
    if text == "predicted":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a class index or 'predicted', got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"class index must be >= 0, got {text}")
    return value


def _add_explain_arguments(parser: argparse.ArgumentParser) -> None:
    from .scores import SCORES

    defaults = _library_defaults()
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files or folders (searched recursively): PNG, JPEG, "
                        "BMP, TIFF, DICOM, .npy; 3-D volumes: NIfTI (.nii, .nii.gz) and "
                        "folders holding the slices of one DICOM series")
    parser.add_argument("--model", required=True, metavar="MODEL",
                        help="TorchScript file, torch.export .pt2 file, or "
                        "package.module:factory returning an nn.Module (the current folder "
                        "is importable), e.g. a MONAI network")
    parser.add_argument("--weights", metavar="FILE",
                        help="state dict loaded into the factory's model, strictly "
                        "(torch.save(model.state_dict(), FILE))")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (created once every check passed; locked while a "
                        "run uses it; rerun the same command to resume)")
    parser.add_argument("--target", type=_target, default="predicted", metavar="N|predicted",
                        help="class to explain (default: the model's predicted class)")

    prep = parser.add_argument_group("preprocessing")
    prep.add_argument("--scale", choices=("unit", "minmax", "none"), default=None,
                      help="unit: to [0,1] by the pixel type's range (floats: own min-max "
                      "unless already in [0,1]); minmax: by each image's min-max; none: "
                      "keep values (default: unit)")
    prep.add_argument("--window", type=_finite, nargs=2, metavar=("CENTER", "WIDTH"),
                      help="CT intensity window: clip the values as read (HU, after the "
                      "DICOM rescale) to [CENTER - WIDTH/2, CENTER + WIDTH/2] and map "
                      "them to [0,1], e.g. --window 40 400 (soft tissue)")
    prep.add_argument("--preprocess", metavar="package.module:factory",
                      help="the model's own preprocessing: a factory returning a callable "
                      "on the C x [D x] H x W tensor as read (e.g. a monai.transforms."
                      "Compose of ScaleIntensityRange...); replaces --scale, must keep "
                      "the shape; bounds default to its output's min and max")
    prep.add_argument("--mean", type=_floats, metavar="M[,M...]",
                      help="normalisation mean: one value, or one per channel separated by "
                      "commas (e.g. 0.485,0.456,0.406)")
    prep.add_argument("--std", type=_positive_floats, metavar="S[,S...]",
                      help="normalisation std: one value, or one per channel separated by "
                      "commas")
    prep.add_argument("--channels", type=_positive_int, metavar="N",
                      help="model channels: replicate grayscale, or RGB to gray for 1 "
                      "(default: the image's own)")
    prep.add_argument("--size", type=_positive_int, nargs=2, metavar=("H", "W"),
                      help="resize 2-D images to the model's input size (bilinear); masks "
                      "are mapped back to the image's resolution (nearest); volumes are "
                      "never resized")
    prep.add_argument("--bounds", type=_finite, nargs=2, metavar=("LO", "HI"),
                      help="valid range of the model input (default: the scaled range "
                      "mapped through --mean/--std, e.g. [0,1])")

    method = parser.add_argument_group("method (defaults: the library's)")
    for flag, key, kind, metavar, text in _METHOD_OPTIONS:
        default = "off" if defaults[key] is None else defaults[key]
        method.add_argument(flag, dest=key, type=_NUMBER_TYPES[kind], default=None,
                            metavar=metavar, help=f"{text} (default: {default})")
    method.add_argument("--mode", choices=("destroy", "preserve"), default=None,
                        help=f"destroy the class evidence (APE_D) or preserve it (APE_S) "
                        f"(default: {defaults['mode']})")
    method.add_argument("--objective", choices=("log_odds", "score"), default=None,
                        help=f"classification term optimised (default: {defaults['objective']})")
    method.add_argument("--phase1-view", choices=("mask", "all"), default=None,
                        help="what phase 1's model sees: J restricted to its mask after the "
                        f"warmup, or all of J (default: {defaults['phase1_view']})")
    method.add_argument("--score", choices=SCORES,
                        default=defaults["score"],
                        help=f"model output to class score (default: {defaults['score']})")

    run = parser.add_argument_group("run")
    run.add_argument("--batch-size", type=_positive_int, default=1, metavar="N",
                     help="inputs of equal size explained together (default: 1; other "
                     "sizes can change results in the last float bits, so the batch size "
                     "is part of the settings: a rerun with another one redoes every input)")
    run.add_argument("--device", default=None,
                     help="cpu, cuda or cuda:N (default: cuda if available, else cpu; "
                     "under torchrun cuda:LOCAL_RANK)")
    run.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                     help="CPU threads per process (default: torch's; 1 is often fastest "
                     "for small images or on a busy machine; part of the settings, as the "
                     "thread count can change masks in the last bits)")
    run.add_argument("--quiet", action="store_true",
                     help="no progress bar or final line (failures are still reported)")


def _method_options(args: argparse.Namespace) -> dict[str, Any]:
    keys = [key for _, key, _, _, _ in _METHOD_OPTIONS] + ["mode", "objective", "phase1_view"]
    return {key: getattr(args, key) for key in keys if getattr(args, key) is not None}


def _usage_error(message: str) -> int:
    print(f"{PROG} explain: error: {message}", file=sys.stderr)
    return 2


def _run_explain(args: argparse.Namespace) -> int:
    from . import dataset_run
    from .dataset_run import ExplainConfig, SetupError
    from .fileio import Preprocessing

    if args.preprocess is not None and args.scale is not None:
        return _usage_error("--scale does not apply with --preprocess (the transform scales)")
    try:
        preprocessing = Preprocessing(
            scale=args.scale or "unit",
            mean=args.mean,
            std=args.std,
            channels=args.channels,
            size=None if args.size is None else (args.size[0], args.size[1]),
            bounds=None if args.bounds is None else (args.bounds[0], args.bounds[1]),
            window=None if args.window is None else (args.window[0], args.window[1]),
        )
    except ValueError as err:
        return _usage_error(str(err))
    config = ExplainConfig(
        inputs=tuple(args.inputs),
        out=args.out,
        model=args.model,
        target=args.target,
        preprocessing=preprocessing,
        weights=args.weights,
        preprocess=args.preprocess,
        method=_method_options(args),
        score=args.score,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.quiet,
        threads=args.threads,
    )
    try:
        return dataset_run.run_explain(config)
    except SetupError as err:
        if err.report:
            _usage_error(str(err))
        return 2


def _load_benchmark() -> ModuleType:
    return importlib.import_module(_BENCHMARK_MODULE)


def build_parser(benchmark: Optional[ModuleType] = None) -> argparse.ArgumentParser:
    """The argument parser; ``benchmark`` is the imported runner, if needed.

    Without it the ``benchmark`` subcommand is listed but takes no options,
    so that ``captum-regadv explain`` never imports the benchmark.
    """
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Regularized adversarial explanations (Captum extension).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    explain = sub.add_parser(
        "explain", help="explain images with a model, resumably",
        description="Explain each input image or volume with RegularizedAdversarial; write "
        "masks, overlays (volumes: NIfTI masks and slice figures), .npz, results.jsonl and "
        "summary.json into --out. Rerun the same "
        "command to resume; launch with torchrun to use several processes/GPUs.",
    )
    _add_explain_arguments(explain)
    explain.set_defaults(func=_run_explain)
    bench = sub.add_parser("benchmark", help="run the paper's benchmark (Table 1)")
    if benchmark is not None:
        benchmark.add_arguments(bench)
        bench.set_defaults(func=benchmark.run)
    return parser


def _command(argv: Sequence[str]) -> Optional[str]:
    """The subcommand named in ``argv`` (the first argument not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; return the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    benchmark = None
    if _command(arguments) == "benchmark":
        try:
            benchmark = _load_benchmark()
        except Exception as err:  # a missing or broken runner is one line, exit 2
            print(f"{PROG} benchmark: error: the benchmark runner is not available "
                  f"({type(err).__name__}: {err})", file=sys.stderr)
            return 2
    parser = build_parser(benchmark)
    try:
        args = parser.parse_args(arguments)
    except SystemExit as stop:  # --help, --version, usage errors
        return stop.code if isinstance(stop.code, int) else 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

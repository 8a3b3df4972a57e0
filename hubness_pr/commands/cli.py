"""What every command-line script of the toolkit shares: one-line errors, exit codes, logging, printing results, JSON output."""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys

from hubness_pr.errors import InputError, one_line
from hubness_pr.commands.launch import interruption, missing_package, say
from hubness_pr.io.outputs import folder_form

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
ROUTES = ("auto", "fused", "torch")  # the engine's CPU routes (hubness_pr.engine.context)
EXIT_SIGPIPE = 128 + 13  # stdout's reader went away (``| head -1``): the status of a process killed by SIGPIPE


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line on stderr and exits with status 2.

    Abbreviated option names are refused (an unknown option is an error, never a guess).
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    return parse


int_at_least = _int_at_least  # argparse type of an integer option with another floor (--hnsw_m: 2)
positive_int = _int_at_least(1)
nonnegative_int = _int_at_least(0)


def unit_float(text: str) -> float:
    """argparse type of a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def output_path(text: str) -> str:
    """argparse type of an output file option (``--json``, ``-o``, ...): an empty path, or one that names
    a folder by its form (it ends with a path separator, or in ``.`` or ``..``), is a usage error
    naming the option (exit 2). An existing folder is refused when the outputs are checked
    (:class:`hubness_pr.io.outputs.Output`)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a file path, got an empty one")
    if folder_form(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a folder path, expected a file path")
    return text


def folder_path(text: str) -> str:
    """argparse type of an output folder option (``--gallery DIR``): an empty path is a usage error."""
    if not text:
        raise argparse.ArgumentTypeError("expected a folder path, got an empty one")
    return text


def device_spec(text: str) -> str:
    """argparse type of ``--device``: a spelling error is a usage error (exit 2); whether the device
    exists here is checked when the run starts (:func:`check_device`)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def check_device(spec: str):
    """The torch.device of ``--device spec``; :class:`InputError` naming the option when it is not available."""
    from hubness_pr.engine.devices import resolve_device

    try:
        return resolve_device(spec)
    except InputError as exc:  # resolve_device's one check: the device is not there
        raise InputError(exc.message, option="--device", value=spec) from None


def add_extraction_options(p: argparse.ArgumentParser) -> None:
    """Options of feature extraction, shared by getFeature.py and the metric script (image inputs).

    Backbone and --preprocess names come from the registry's declarations: building the parser
    imports neither torch nor torchvision nor any backbone module (start-up of the scripts)."""
    from hubness_pr.extraction.backbones import BUILTIN, PREPROCESS, PREPROCESS_ALIASES, available_backbones

    described = "; ".join(f"{name}: {BUILTIN[name][1]}" for name in available_backbones() if name in BUILTIN)
    g = p.add_argument_group("feature extraction (image inputs)")
    g.add_argument("--backbone", default="vgg16", choices=available_backbones(),
                   help=f"feature extractor ({described})")
    g.add_argument("--weights", metavar="FILE", help="the backbone's weights: a state dict (torchvision format for "
                   "vgg16, inception_v3), or NVIDIA's TorchScript vgg16.pt for vgg16_nvidia")
    g.add_argument("--preprocess", choices=[*PREPROCESS, *PREPROCESS_ALIASES], default=None,
                   help="resize and normalisation (default: pil; vgg16_nvidia: none, its module does both): "
                        + "; ".join(f"{name}: {text}" for name, text in PREPROCESS.items())
                        + "; " + "; ".join(f"{old}: old name of {new}" for old, new in PREPROCESS_ALIASES.items()))
    g.add_argument("--allow_download", "--allow-download", dest="allow_download", action="store_true",
                   help="let missing weights be downloaded (torchvision's ImageNet weights, torch hub's FID Inception and "
                        "DINOv2 checkpoints, open_clip's from the Hugging Face hub; needs internet)")
    g.add_argument("--batch_size", "--batch-size", dest="batch_size", type=positive_int, default=64,
                   help="images per forward pass")
    g.add_argument("--num_workers", "--num-workers", dest="num_workers", type=nonnegative_int, default=None,
                   help="decoding worker processes (default: CPUs, at most 8; 0: none)")
    g.add_argument("--half", action="store_true", help="float16 inference (CUDA only)")
    g.add_argument("--skip_bad", "--skip-bad", dest="skip_bad", action="store_true",
                   help="skip undecodable images (listed on stderr and in meta) instead of stopping")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Device, progress, verbosity and version: the same in every script."""
    from hubness_pr.version import __version__

    p.add_argument("--device", default="auto", type=device_spec, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show progress bars (--no-progress hides them; default: only on a terminal)")
    p.add_argument("-q", "--quiet", action="store_const", const=-1, dest="verbosity", default=0,
                   help="log errors only (default: warnings and errors)")
    p.add_argument("-v", "--verbose", action="count", dest="verbosity",
                   help="log what the run does (-vv: debug details)")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")


def add_route_option(p: argparse.ArgumentParser) -> None:
    """``--route``: the CPU route of the distance tiles (the commands that run the engine)."""
    p.add_argument("--route", choices=ROUTES, default=None,
                   help="the CPU route of the distance tiles: 'fused' (compiled numba kernels), 'torch' (torch "
                        "operations) or 'auto' (fused from about 2,000 x 2,000 x 4,096 distance products on); "
                        "default: $HUBNESS_KERNELS if set, else auto. Results are the same on every route")


def route_of(args) -> str:
    """``--route``, by default ``$HUBNESS_KERNELS`` (the one place the environment chooses a route),
    else 'auto'."""
    route = args.route or os.environ.get("HUBNESS_KERNELS") or "auto"
    if route not in ROUTES:
        raise InputError(f"HUBNESS_KERNELS={route!r}: the default of --route must be auto, fused or torch")
    return route


def extraction_kwargs(args, seed: int = 0) -> dict:
    """The extraction options as :func:`hubness_pr.extraction.extract.extract_path` takes them: the
    backbone spec (``backbone``) and the run's keyword options."""
    from hubness_pr.extraction.extract import BackboneSpec

    spec = BackboneSpec(args.backbone, weights=args.weights, preprocess=args.preprocess, seed=seed,
                        allow_download=args.allow_download)
    return dict(backbone=spec, batch_size=args.batch_size, num_workers=args.num_workers, device=args.device,
                half=args.half, skip_bad=args.skip_bad)


def setup_logging(verbosity: int) -> None:
    """Logs go to stderr: errors only with -q, warnings by default (bad input gives one line: the
    error), what the run does with -v, debug details with -vv."""
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(message)s", force=True)
    for noisy in ("matplotlib", "PIL", "numba"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


class StdoutGone(Exception):
    """stdout's reader went away (EPIPE): the run ends quietly with :data:`EXIT_SIGPIPE`."""


def print_results(lines) -> None:
    """Print result lines to stdout. A reader that went away raises :class:`StdoutGone`; any other
    failure (``>/dev/full``, a stdout closed with ``>&-``) an :class:`InputError` whose file is stdout
    (where the user sent the results). Either way stdout
    is pointed at /dev/null, so that Python's flush at exit cannot fail again."""
    if sys.stdout is None:  # no stdout at all (started with it closed, outside the scripts' launcher)
        raise InputError("cannot write the results (stdout is closed)", file="stdout")
    try:
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_to_devnull()
        raise StdoutGone() from None
    except OSError as exc:
        _stdout_to_devnull()
        raise InputError(f"cannot write the results ({exc.strerror or exc})", file="stdout") from exc


def _stdout_to_devnull() -> None:
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # not a real file: replace the object instead
        sys.stdout = open(os.devnull, "w")
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)


INTERNAL_ERROR = "internal error (a bug in the toolkit, please report it):"


def run_main(prog: str, body, interrupted: str = "no output file was written or changed") -> int:
    """Call ``body()``; turn bad input into one line on stderr and a non-zero exit status.

    :class:`hubness_pr.errors.InputError`, and only it, is the toolkit's "bad input": the files,
    options and outputs the user gave, including the system's refusal to read or write them (a
    missing or unreadable file, a full disk, a stdout that cannot be written), wrapped where they
    are opened, read or written. Its line names the file or option; status 1. A third-party
    package that is not installed is one line naming it and its install command. Anything else
    (a ValueError, TypeError, RuntimeError, an OSError no reader wrapped, ... of the engine or of a
    library) is a fault of the toolkit, never shown as bad input: the line ``PROG: internal error
    (a bug in the toolkit, please report it):`` and the traceback on stderr, status 1 (running out
    of memory says so instead of calling itself a bug, with the traceback as well). Ctrl-C: one
    line, status 130; SIGTERM (under the launcher): one line, status 143; stdout closed by its
    reader: no line, status 141.
    """
    try:
        body()
    except StdoutGone:
        return EXIT_SIGPIPE
    except ModuleNotFoundError as exc:  # run outside the toolkit's environment (hubness_pr.commands.launch.missing_package)
        line = missing_package(exc)
        if line is None:  # a broken installation: its traceback names what to repair
            raise
        say(f"{prog}: error: {line}")
        return EXIT_ERROR
    except InputError as exc:
        say(f"{prog}: error: {one_line(exc)}")
        return EXIT_ERROR
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM under the launcher (hubness_pr.commands.launch.Terminated)
        word, status = interruption(exc)
        say(f"{prog}: {word}; {interrupted}")
        return status
    except Exception as exc:  # noqa: BLE001 - a fault of the toolkit: its traceback, never a line of bad input
        _internal_error(prog, exc)
        return EXIT_ERROR
    return EXIT_OK


def _out_of_memory(exc: BaseException) -> bool:
    """MemoryError, or torch's (CUDA) OutOfMemoryError: the machine's limit, not a bug (by type)."""
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    return isinstance(oom, type) and isinstance(exc, oom)


def _internal_error(prog: str, exc: BaseException) -> None:
    """A fault of the toolkit (or the machine's memory): one line saying so, then the traceback, on stderr."""
    import traceback

    head = (f"{prog}: out of memory (try a smaller --memory_budget or --batch_size, or another --device):"
            if _out_of_memory(exc) else f"{prog}: {INTERNAL_ERROR}")
    say(head)
    try:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):  # stderr itself is gone
        pass


"""The ``latentwatch`` command.

Parsing only: each command's work lives in the module it names. ``train``, ``evaluate`` and
``demo`` hand off to ``training`` through an import inside the command, so this module (and
``serve``/``score``/``info``) never loads torch. A user's mistake prints one ``error:`` line
and exits with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from service.errors import LatentwatchError, MissingExtra, did_you_mean
from service.validation import DEVICES

EXIT_USER_ERROR = 2
TRAIN_EXTRA_HINT = "install the training extra: pip install 'latentwatch[train]'"
_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")  # a negative number is a value, not an option (as argparse reads it)


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that names an option it does not know, with the closest known one,
    before any other complaint: argparse alone reports ``--mdoel`` as a missing ``--model``.

    Each command's parser checks its own arguments; the top parser checks those before the
    command. Where argparse suggests close choices itself (Python 3.14), it is asked to.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if sys.version_info >= (3, 14):
            kwargs.setdefault("suggest_on_error", True)
        super().__init__(*args, **kwargs)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        arguments = list(sys.argv[1:] if args is None else args)
        known = [option for action in self._actions for option in action.option_strings]
        unknown = self._unknown_options(arguments, known)
        if unknown:
            named = ", ".join(f"{name}{did_you_mean(name, known)}" for name in unknown)
            self.error(f"unrecognized argument{'s' if len(unknown) > 1 else ''}: {named}")
        return super().parse_known_args(arguments, namespace)

    def _unknown_options(self, arguments: Sequence[str], known: Sequence[str]) -> list[str]:
        """Option-like arguments that are no option of this parser (nor, when abbreviations are
        allowed, the start of one), up to ``--`` or, in a parser of commands, the command."""
        commands = self._subparsers is not None
        unknown = []
        for argument in arguments:
            if argument == "--" or (commands and not argument.startswith("-")):
                break
            name = argument.split("=", 1)[0]
            if not name.startswith("-") or name == "-" or _NUMBER.match(name) or name in known:
                continue
            if self.allow_abbrev and name.startswith("--") and any(k.startswith(name) for k in known):
                continue  # argparse expands it, or says which options it could mean
            if not name.startswith("--") and name[:2] in known:
                continue  # short options run together (-vv), or one with its value attached
            unknown.append(name)
        return unknown


def _lazy(module: str, function: str, *, needs_torch: bool = False) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            handler = getattr(importlib.import_module(module), function)
        except ModuleNotFoundError as err:
            if needs_torch and err.name and err.name.split(".")[0] in {"torch", "sklearn", "onnx", "matplotlib"}:
                msg = f"`latentwatch {args.command}` needs {err.name}, which is not installed; {TRAIN_EXTRA_HINT}"
                raise MissingExtra(msg) from None
            raise
        return handler(args)

    return run


def _add_train(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("train", help="fit a model on normal rows and write a scoring bundle")
    p.add_argument("--data", required=True, help="CSV or Parquet file, or a folder of Parquet files")
    p.add_argument("--out", required=True, help="bundle folder to write (replaced atomically)")
    p.add_argument("--model", choices=["vae", "aae", "ae", "vaegan", "hvae"], help="model type (default: vae)")
    p.add_argument("--label-column", help="1/0 column: anomalous rows are left out of training")
    p.add_argument("--features", action="append", help="feature columns (comma-separated; default: all)")
    p.add_argument("--exclude", action="append", help="columns that are not features (comma-separated)")
    p.add_argument("--categorical", action="append", help="numeric columns to treat as categories")
    p.add_argument("--config", help="TOML file of training settings")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--device", choices=DEVICES, help="training device (default auto)")
    p.add_argument("--denoise", type=float, help="ae only: input noise std for a denoising autoencoder")
    p.add_argument(
        "--free-bits",
        type=float,
        help="vae, vaegan: nats of KL per latent dimension left free in training (default 0; scores stay the ELBO)",
    )
    p.add_argument(
        "--prior",
        choices=["auto", "standard", "defensive"],
        help="prior of the scores' KL term: standard N(0, I), or (vae, vaegan) defensive, half N(0, I) and half "
        "the fit rows' posteriors (default auto: defensive for vae)",
    )
    p.add_argument(
        "--decoder",
        choices=["mlp", "bounded"],
        help="decoder network: mlp, or bounded (LayerNorm in its hidden layers and a linear path from the code, "
        "so a far code cannot extrapolate a row) (default bounded)",
    )
    p.add_argument("--alpha", type=float, help="target false-positive rate (default 0.01)")
    p.add_argument("--beta", type=float, help="weight of the KL term (default 1)")
    p.add_argument("--warmup-steps", type=int, help="KL warm-up length in steps")
    p.add_argument("--max-steps", type=int, help="cap on gradient steps (default: warm-up + max(20000, 100 epochs))")
    p.add_argument(
        "--restarts",
        type=int,
        help="fit this many initializations and keep the best validation loss (default 1; costs N x the fit)",
    )
    p.add_argument(
        "--members",
        type=int,
        help="train this many models apart on one split of the rows (--folds 1, implied) and score them as their "
        "mixture (default 1; costs N x the fit, and each member's encoder and decoder in the graph)",
    )
    p.add_argument(
        "--folds",
        type=int,
        help="cross-fit: train one model per fold on the other folds and score them as their mixture; each row "
        "is calibrated by the model that never saw it (default 5 below 500 normal rows, 3 up to 20,000, else 1; "
        "costs K x the fit; 1: one model, 20%% of the rows held out)",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads of the fit: members are fitted side by side, up to this many at once, each with "
        "threads // processes torch threads (default: every core the process may use, one torch thread each)",
    )
    p.add_argument(
        "--nproc",
        type=int,
        help="train on N local processes with torch.distributed (the launcher torchrun runs; one model, "
        "each process reading its own shard of the rows)",
    )
    p.add_argument(
        "--max-rows",
        type=int,
        help="normal rows to read at most; a larger table is a seeded uniform sample, streamed from Parquet "
        "(default 1,000,000)",
    )
    p.add_argument("--name", help="model name (default: the data file's name)")
    p.add_argument("--version", help="model version (default: a UTC timestamp)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(handler=_lazy("training.cli", "train_command", needs_torch=True))


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("evaluate", help="detection quality of a bundle on labelled rows")
    p.add_argument("--model", required=True, help="bundle folder")
    p.add_argument("--data", required=True, help="CSV or Parquet file with a label column")
    p.add_argument("--label-column", required=True, help="1/0 column (1 = anomaly)")
    p.set_defaults(handler=_lazy("training.cli", "evaluate_command", needs_torch=True))


def _add_info(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("info", help="print a bundle's manifest readably")
    p.add_argument("bundle", help="bundle folder")
    p.set_defaults(handler=_info)


def _info(args: argparse.Namespace) -> int:
    from service.bundle import load_bundle
    from service.info import format_manifest

    print(format_manifest(load_bundle(args.bundle).manifest))
    return 0


def _add_sign(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("sign", help="add an integrity record to a bundle written before latentwatch recorded one")
    p.add_argument("bundle", help="bundle folder")
    p.set_defaults(handler=_sign)


def _sign(args: argparse.Namespace) -> int:
    """Record the digests of a bundle as it is now; its graphs' digests must still match."""
    from service.bundle import MANIFEST_FILE, load_bundle, write_manifest

    bundle = load_bundle(args.bundle)  # refuses one whose record or graph digests disagree
    if bundle.manifest.integrity is not None:
        print(f"{bundle.path / MANIFEST_FILE} already has an integrity record, and it matches")
        return 0
    write_manifest(bundle.path, bundle.manifest)
    print(f"{bundle.path / MANIFEST_FILE}: integrity record written")
    return 0


def _add_publish(commands: argparse._SubParsersAction) -> None:
    from service.publish import add_publish_arguments

    p = commands.add_parser(
        "publish", help="copy a bundle into a model repository in one step, so a running server never sees half of it"
    )
    add_publish_arguments(p)
    p.set_defaults(handler=_lazy("service.publish", "publish_command"))


def _add_demo(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("demo", help="the quick start: train, evaluate and score the embedded sample")
    p.add_argument("--out", default="demo-output", help="folder for the sample data and bundle")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_lazy("training.demo", "demo_command", needs_torch=True))


def _add_sample(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("sample", help="draw synthetic normal rows from a bundle's generative model")
    p.add_argument("--model", required=True, help="bundle folder (with decoder.onnx)")
    p.add_argument("--rows", required=True, type=int, help="number of rows to draw")
    p.add_argument("--output", required=True, help="CSV or Parquet file to write (format by extension)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0): the same seed, the same rows")
    p.set_defaults(handler=_lazy("service.generate", "sample_command"))


def _add_interpolate(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("interpolate", help="decode the latent straight line between two rows")
    p.add_argument("--model", required=True, help="bundle folder (with decoder.onnx)")
    p.add_argument("--data", required=True, help="CSV or Parquet file holding the two rows")
    p.add_argument("--from", dest="from_row", required=True, type=int, help="first row (position, from 0)")
    p.add_argument("--to", dest="to_row", required=True, type=int, help="last row (position, from 0)")
    p.add_argument("--steps", type=int, default=8, help="points on the path, both ends included (default 8)")
    p.add_argument("--output", help="CSV or Parquet file to write; default: print the path as a table")
    p.set_defaults(handler=_lazy("service.generate", "interpolate_command"))


def _add_score(commands: argparse._SubParsersAction) -> None:
    from service.batch.cli import add_score_arguments

    p = commands.add_parser("score", help="score a CSV/Parquet file or folder with a bundle into Parquet or CSV")
    add_score_arguments(p)
    p.set_defaults(handler=_lazy("service.batch.cli", "score_command"))


def _add_serve(commands: argparse._SubParsersAction) -> None:
    from service.serve import add_serve_arguments

    p = commands.add_parser("serve", help="serve model bundles over gRPC, with Prometheus metrics")
    add_serve_arguments(p)
    p.set_defaults(handler=_lazy("service.serve", "serve_command"))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="latentwatch", description="Anomaly detection with variational and adversarial autoencoders.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_train,
        _add_evaluate,
        _add_info,
        _add_sign,
        _add_publish,
        _add_demo,
        _add_sample,
        _add_interpolate,
        _add_score,
        _add_serve,
    ):
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return args.handler(args)
    except LatentwatchError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and friends
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at the interpreter's final flush
        return 0


if __name__ == "__main__":
    sys.exit(main())

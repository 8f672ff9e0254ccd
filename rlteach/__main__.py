"""Command line: train any of the course's algorithms outside Jupyter.

    python -m rlteach ppo --total-steps 100000 --seed 0 --out runs/ppo.json
    python -m rlteach dppo --workers 2 --mode sync --out runs/dppo.json
    python -m rlteach da3c --workers 4 --env-delay 0.001
    python -m rlteach dppo --workers 4 --backend ray --address auto   # on a Ray cluster

Every field of the algorithm's config is an option (``python -m rlteach dppo --help``). A progress
bar shows env steps and the recent mean return; at the end a summary table is printed and the
history is written as JSON for a notebook to plot (``rlteach.history.History.load``). Ctrl-C stops the
run and keeps what it learned.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

ALGORITHMS = {
    "reinforce": ("rlteach.algos.reinforce", "ReinforceConfig", "train_reinforce"),
    "a2c": ("rlteach.algos.a2c", "A2CConfig", "train_a2c"),
    "ppo": ("rlteach.algos.ppo", "PPOConfig", "train_ppo"),
    "da3c": ("rlteach.distributed.da3c", "DA3CConfig", "run_da3c"),
    "dppo": ("rlteach.distributed.dppo", "DPPOConfig", "run_dppo"),
}


def _module(algorithm: str):
    import importlib

    return importlib.import_module(ALGORITHMS[algorithm][0])


def _load(algorithm: str):
    _, config_name, train_name = ALGORITHMS[algorithm]
    module = _module(algorithm)
    return getattr(module, config_name), getattr(module, train_name)


EXPECTED = {int: "an integer", float: "a number", tuple: "integers separated by commas, e.g. 64,64"}


def _parse_value(text: str, default):
    """``text`` as a value of the type of the field's ``default``; argparse turns the
    ``ArgumentTypeError`` into ``argument --NAME: expected …, got '…'`` and exit code 2."""
    if isinstance(default, bool):
        if text.lower() in {"1", "true", "yes", "on"}:
            return True
        if text.lower() in {"0", "false", "no", "off"}:
            return False
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    try:
        if isinstance(default, tuple):
            return tuple(int(x) for x in text.split(","))
        return type(default)(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {EXPECTED.get(type(default), type(default).__name__)}, got {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rlteach", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="algorithm", required=True)
    for name in ALGORITHMS:
        config_cls, _ = _load(name)
        p = sub.add_parser(name, help=f"train {name}")
        for f in dataclasses.fields(config_cls):
            default = f.default
            p.add_argument(
                "--" + f.name.replace("_", "-"),
                dest=f.name,
                default=None,
                metavar="VALUE",
                type=lambda text, d=default: _parse_value(text, d),
                help=f"{f.metadata.get('help', '')} (default: {default})",
            )
        p.add_argument("--out", default=None, help="write the history as JSON to this path")
        p.add_argument(
            "--save", default=None, help="write a checkpoint (rlteach.save) to this path"
        )
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        backends = getattr(_module(name), "BACKENDS", None)
        if backends:
            p.add_argument(
                "--backend",
                choices=backends,
                default=None,
                help="where the workers run (default: local processes)",
            )
            p.add_argument(
                "--address",
                default=None,
                help="with --backend ray: 'auto' or 'ray://HEAD:10001' joins a Ray cluster",
            )
    return parser


class ProgressBar:
    """A one-line progress bar on stderr: env steps, episodes, recent mean return, speed."""

    def __init__(self, total: int, enabled: bool = True, width: int = 30):
        self.total, self.enabled, self.width = total, enabled, width
        self.start = time.perf_counter()
        self.last = 0.0

    def __call__(self, history) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self.last < 0.2:
            return
        self.last = now
        steps = history.updates[-1]["env_steps"] if history.updates else 0
        done = min(1.0, steps / self.total)
        bar = "#" * int(done * self.width) + "." * (self.width - int(done * self.width))
        rate = steps / max(now - self.start, 1e-9)
        sys.stderr.write(
            f"\r[{bar}] {steps:>9,}/{self.total:,} steps  {len(history.episodes):>6} episodes  "
            f"return {history.recent_mean_return():7.1f}  {rate:8,.0f} steps/s"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def summary(result, seconds: float) -> str:
    """A small table of what the run reached."""
    from rlteach.plots import Table

    h = result.history
    steps = h.updates[-1]["env_steps"] if h.updates else 0
    reached = h.first_reaching(475)
    rows = [
        ("algorithm", h.meta.get("algorithm", "")),
        ("env", result.config.env_id),
        ("env steps", f"{steps:,}"),
        ("episodes", f"{len(h.episodes):,}"),
        ("mean return, last 20 episodes", f"{h.recent_mean_return():.1f}"),
        ("wall-clock", f"{seconds:.1f} s"),
        ("env steps per second", f"{steps / max(seconds, 1e-9):,.0f}"),
        ("stopped early", "yes (partial result)" if result.interrupted else "no"),
    ]
    if reached and result.config.env_id.startswith("CartPole"):
        rows.append(
            (
                "first reached 475 (last-20 mean)",
                f"{reached['env_steps']:,} steps, {reached['wall_time']:.1f} s",
            )
        )
    if "versions" in h.meta:
        rows.append(("server versions", f"{h.meta['versions']:,}"))
        rows.append(("pushes dropped", f"{h.meta['pushes_dropped']:,}"))
    return repr(Table(rows, ["", ""]))


def main(argv=None) -> int:
    args = vars(build_parser().parse_args(argv))
    algorithm, out, save, quiet = (args.pop(k) for k in ("algorithm", "out", "save", "quiet"))
    placement = {k: args.pop(k) for k in ("backend", "address") if args.get(k) is not None}
    overrides = {k: v for k, v in args.items() if v is not None}
    config_cls, train = _load(algorithm)
    try:
        config = config_cls(**overrides)
        from rlteach.config import validate
        from rlteach.envs import registered_spec

        validate(config)
        registered_spec(config.env_id)
    except ValueError as exc:
        return _usage_error(exc)
    bar = ProgressBar(config.total_steps, enabled=not quiet)
    start = time.perf_counter()
    try:
        result = train(config, callback=bar, **placement)
    except ValueError as exc:  # the trainers check the rest (backend, W − D, …) before starting
        bar.close()
        return _usage_error(exc)
    bar.close()
    print(summary(result, time.perf_counter() - start))
    if out:
        print(f"history written to {result.history.save(out)}")
    if save:
        from rlteach.checkpoint import save as save_checkpoint

        print(f"checkpoint written to {save_checkpoint(result, save)}")
    return 0


def _usage_error(exc: ValueError) -> int:
    """Bad input: one ``error:`` line on stderr, no traceback, and exit code 2, as argparse does."""
    print(f"error: {exc}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

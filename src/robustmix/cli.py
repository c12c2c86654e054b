"""The ``robustmix`` command line: one small driver generated from the commands' config dataclasses.

Each command is a config dataclass (``robustmix.commands``) whose fields made with
:func:`robustmix._config.option` are its flags (default, type, help, choices: written once, there) and whose
``run(context)`` returns a typed summary (or a message).  The driver parses argv (defaults < ``--config`` YAML <
typed flags; ``--device``, ``--threads``, ``--debug`` before or after the command), builds the config (which
checks itself), runs it, and for a summary writes ``summary.json``, ``settings.json`` and the report.  The only
place that reads argv, configures logging and picks exit codes.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import os
import sys
import types
import typing
from pathlib import Path

from ._config import default_of, options
from ._io import all_or_nothing, folder_written_as, write_json
from .commands import COMMANDS, Context
from .errors import ConfigError, RobustMixError, VerificationError

logger = logging.getLogger("robustmix")
TABLE = {c.NAME: c for c in COMMANDS}
EXAMPLES = {name: c.EXAMPLES for name, c in TABLE.items()}
GLOBAL = [  # (flags, argparse keywords): accepted before or after the command
    (("--device",), {"help": "where models run: auto (a GPU when there is one), cpu, cuda, cuda:1, ... "
                             "(default: auto)"}),
    (("--threads",), {"type": int, "help": "CPU threads for PyTorch (default: PyTorch's choice)"}),
    (("--debug",), {"action": "store_true", "help": "show the full traceback of an error"}),
    (("-v", "--verbose"), {"action": "store_true", "help": "debug logging"}),
    (("--import-code",), {"action": "store_true", "help": "let a checkpoint whose architecture is your own import the "
                                                         "module its card names (module:function); that runs the "
                                                         "module's code: only for files you trust"}),
]
GLOBAL_DESTS = ("device", "threads", "debug", "verbose", "import_code")
ORDER = {"std": 0, "rob": 0, "model": 0, "dataset": 1, "data": 1, "data_root": 1, "split": 1, "n": 1, "out": 3,
         "fresh": 3}


class UsageError(Exception):
    """A command-line mistake, reported as one line with exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def shown_default(f, meta) -> str:
    if meta["shown"] is not None or meta["required"]:
        return meta["shown"] or "required"
    value = default_of(f)
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return "none" if value is None else str(value)


def add_option(p: argparse.ArgumentParser, f, meta: dict, typ) -> None:
    base = typ
    if isinstance(typ, types.UnionType) or typing.get_origin(typ) is typing.Union:
        base = next(a for a in typing.get_args(typ) if a is not type(None))
    kw = {"default": argparse.SUPPRESS, "help": f"{meta['help']} (default: {shown_default(f, meta)})".replace("%",
                                                                                                              "%%")}
    if base is bool:
        kw["action"] = "store_true"
    elif base is list or typing.get_origin(base) is list:
        kw.update(nargs="+", type=meta["of"] or str)
    else:
        kw["type"] = base
    if meta["choices"]:
        kw["choices"] = meta["choices"]
    if meta["positional"]:
        p.add_argument(f.name, nargs="?", metavar=meta["metavar"] or f.name.upper(), **kw)
        return
    if meta["metavar"]:
        kw["metavar"] = meta["metavar"]
    p.add_argument(*(meta["flags"] or ("--" + f.name.replace("_", "-"),)), dest=f.name, **kw)


def build_parser() -> Parser:
    ap = Parser(prog="robustmix", description="Mix a standard and a robust classifier: log((1 - alpha) softmax(g) + "
                "alpha softmax(h)); attack it, certify it, report it. 'robustmix COMMAND --help' for each command.")
    for flags, kw in GLOBAL:
        ap.add_argument(*flags, default=argparse.SUPPRESS, **kw)
    sub = ap.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for name, cls in TABLE.items():
        p = sub.add_parser(name, help=cls.HELP.replace("%", "%%"), description=cls.HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="examples:\n  " + cls.EXAMPLES.replace("\n", "\n  "))
        p.add_argument("--config", default=argparse.SUPPRESS, help="YAML file of settings (keys as the long option "
                       "names); flags typed on the command line win over it")
        for f, meta, typ in sorted(options(cls), key=lambda o: ORDER.get(o[0].name, 2)):
            add_option(p, f, meta, typ)
        for flags, kw in GLOBAL:
            p.add_argument(*flags, default=argparse.SUPPRESS, **{**kw, "help": argparse.SUPPRESS})
    return ap


def yaml_tokens(path: Path, sub: argparse.ArgumentParser, command: str) -> list[str]:
    """A YAML settings file as command-line tokens, so argparse checks its values like typed flags."""
    import yaml

    if not path.is_file():
        raise ConfigError(f"config file {path} not found" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path} is not a valid YAML file ({' '.join(str(exc).split())[:120]}); write one "
                          "'option: value' per line") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of option names to values, e.g. 'eps: 0.1'")
    actions, tokens, seen = {a.dest: a for a in sub._actions if a.option_strings}, [], {}
    actions.update({o.lstrip("-").replace("-", "_"): a for a in sub._actions for o in a.option_strings
                    if o.startswith("--")})   # a key may be the long option's name (samples) or the setting's
    for key, value in data.items():
        action = actions.get(str(key).replace("-", "_"))
        if action is None or action.dest in ("config", "help") + GLOBAL_DESTS:
            raise ConfigError(f"unknown setting {key!r} in {path}; see 'robustmix {command} --help'")
        flag = max(action.option_strings, key=len)
        if action.dest in seen:
            raise ConfigError(f"{path} gives {seen[action.dest]!r} and {key!r}, two names of one setting "
                              f"({'/'.join(action.option_strings)}); keep one")
        seen[action.dest] = key
        if isinstance(action, argparse._StoreTrueAction):
            if not isinstance(value, bool):
                raise ConfigError(f"setting {key!r} in {path} must be true or false, got {value!r}")
            tokens += [flag] if value else []
        elif isinstance(value, list):
            if action.nargs not in ("+", "*"):
                raise ConfigError(f"setting {key!r} in {path} takes one value, got a list")
            tokens += [flag] + [str(v) for v in value]
        elif isinstance(value, (dict, bool)) or value is None:
            raise ConfigError(f"setting {key!r} in {path} has the wrong type ({value!r}); see 'robustmix {command} "
                              "--help'")
        else:
            tokens += [flag, str(value)]
    return tokens


def parse_args(argv) -> argparse.Namespace:
    """The given settings only (defaults < YAML (--config) < flags typed on the command line)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "config", None):
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[args.command]
        at = argv.index(args.command)
        args = parser.parse_args(argv[:at + 1] + yaml_tokens(Path(args.config), sub, args.command) + argv[at + 1:])
    return args


def make_config(args: argparse.Namespace):
    """The command's config from the given settings (it checks itself) and the run context."""
    given = {k: v for k, v in vars(args).items() if k not in ("command", "config") + GLOBAL_DESTS}
    cls = TABLE[args.command]
    for f, meta, _ in options(cls):   # required: checked on the merged settings (a typed flag or the YAML file)
        if meta["required"] and f.name not in given:
            flag = max(meta["flags"] or ("--" + f.name.replace("_", "-"),), key=len)
            raise UsageError(f"{flag} is required: type it, or put '{flag.lstrip('-')}: ...' in the --config YAML file")
    for a, b in getattr(cls, "EXCLUSIVE", ()):
        if a in given and b in given:
            flag = {"n": "-n"}
            raise ConfigError(f"{flag.get(a, '--' + a.replace('_', '-'))} and {flag.get(b, '--' + b.replace('_', '-'))} "
                              "do not go together; give one")
    ctx = Context(device=getattr(args, "device", "auto"), threads=getattr(args, "threads", None),
                  import_code=getattr(args, "import_code", False))
    if ctx.threads is not None and ctx.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {ctx.threads}")
    ctx.torch_device()
    return cls(**given), ctx


DESCRIBE = ("file", "model", "std", "rob", "mixer", "alpha", "scale", "power", "bias", "top_k", "std_map", "dataset",
            "data", "split", "n", "indices", "norm", "eps", "sigma")
OUTPUTS = ("out", "export", "onnx")
NONLINEAR_ONLY = {"scale", "power", "bias", "top_k", "std_map"}


def describe(cfg) -> str:
    """The console's first line: which models, data and threat model this run uses, and where it writes."""
    skip = ({"std", "rob", "alpha"} if getattr(cfg, "model", None) else set()) | \
        ({"n"} if getattr(cfg, "indices", None) else set()) | \
        ({"mixer"} if getattr(cfg, "mixer", "linear") == "linear" else set()) | \
        (NONLINEAR_ONLY if getattr(cfg, "mixer", None) != "nonlinear" else set())
    parts = [f"{k}={getattr(cfg, k)}" for k in DESCRIBE if k not in skip and getattr(cfg, k, None) is not None]
    outputs = [str(getattr(cfg, k)) for k in OUTPUTS if getattr(cfg, k, None)]
    return f"robustmix {cfg.NAME}: {' '.join(parts)} -> {', '.join(outputs)}" if parts and outputs else ""


def finish(result, cfg, ctx: Context) -> None:
    """Save a summary with its settings and report (only after the run succeeded; all three appear together, or
    none if writing one fails); print what the user needs."""
    if isinstance(result, str):
        print(result)
        return
    from .reports import terminal_summary, write_report

    result.command = ctx.command_line
    result.data = getattr(cfg, "data_used", None) or result.data
    out = cfg.out_path
    with all_or_nothing():
        result.save(out / "summary.json")
        write_json(out / "settings.json", {k: v for k, v in dataclasses.asdict(cfg).items() if k != "fresh"})
        with folder_written_as(out) as tmp:
            paths = {k: out / Path(v).relative_to(tmp) for k, v in write_report(result, tmp).items()}
    print(terminal_summary(result))
    print(f"\nwrote {cfg.out_path}/summary.json; report: {paths['html']}")


def main(argv=None) -> int:
    """The ``robustmix`` console script: the exit status (0 done, 2 bad input, 3 failed verification, 130
    interrupted)."""
    try:
        code = run_cli(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()   # a buffered pipe fails here, not at interpreter exit
        return code
    except BrokenPipeError:   # output piped into a reader that stopped early (| head): results are already saved
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


class BarSafeHandler(logging.StreamHandler):
    """The console log handler: each line goes out through tqdm.write, which clears the progress bars on the
    console, prints the line and redraws them, so log lines never break a bar."""

    def emit(self, record):
        from tqdm.auto import tqdm

        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001  (logging's rule: a failing handler reports, it does not raise)
            self.handleError(record)


def run_cli(argv: list[str]) -> int:
    debug = "--debug" in argv
    try:
        args = parse_args(argv)
        cfg, ctx = make_config(args)
    except UsageError as exc:
        command = next((a for a in argv if a in TABLE), "")
        print(f"robustmix: error: {exc} (see 'robustmix {command + ' ' if command else ''}--help')", file=sys.stderr)
        return 2
    except RobustMixError as exc:
        if debug:
            raise
        print(f"robustmix: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", handlers=[BarSafeHandler()])
    for noisy in ("auto-attack", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    ctx.argv = argv
    try:
        if ctx.threads:
            import torch

            torch.set_num_threads(ctx.threads)
        if describe(cfg):
            print(describe(cfg), flush=True)
        if getattr(cfg, "fresh", False):
            cfg.move_aside_outputs()
        result = cfg.run(ctx)
        if result is not None:   # None: a worker process of a distributed run (rank 0 reports)
            finish(result, cfg, ctx)
        return 0
    except (RobustMixError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        if debug:
            raise
        print(f"robustmix {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 3 if isinstance(exc, VerificationError) else 2
    except OSError as exc:
        if debug or exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        print(f"robustmix {args.command}: error: {exc.strerror}; no output was left half-written: free some space "
              "(or write elsewhere) and rerun the same command, which resumes from its records", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        kept = recorded_examples(getattr(cfg, "out_path", None))
        print(f"robustmix {args.command}: interrupted; " + (
            f"{kept} example record(s) are kept in {cfg.out_path}: rerun the same command to resume" if kept else
            "no example was finished yet, so nothing was saved (a rerun starts from the beginning)"), file=sys.stderr)
        return 130
    finally:
        teardown()


def recorded_examples(folder) -> int:
    """Example records (not headers) in a run's records files under ``folder``: what a rerun resumes from."""
    if folder is None or not Path(folder).is_dir():
        return 0
    count = 0
    for path in Path(folder).rglob("*.jsonl"):
        try:
            with open(path, "rb") as fh:
                count += sum(1 for line in fh if line.strip() and not line.startswith(b'{"header"'))
        except OSError:
            continue
    return count


def teardown() -> None:
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())

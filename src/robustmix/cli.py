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
import errno
import json
import logging
import os
import sys
import types
import typing
from pathlib import Path

from ._config import build, flat, internal_defaults, leaves
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
    (("--channels-last",), {"action": "store_true", "help": "run every model's convolutions in the channels_last memory "
                                                           "format: zoo models and robustmix checkpoints load that "
                                                           "way already, this applies it to ARCH@WEIGHTS, .pt2 and "
                                                           "factory models too (the same numbers up to float "
                                                           "rounding; BENCHMARKS.md measures the speed)"}),
    (("--import-code",), {"action": "store_true", "help": "let a checkpoint whose architecture is your own import the "
                                                         "module its card names (module:function); that runs the "
                                                         "module's code: only for files you trust"}),
]
GLOBAL_DESTS = ("device", "threads", "debug", "verbose", "import_code", "channels_last")
ORDER = {"std": 0, "rob": 0, "model": 0, "dataset": 1, "data": 1, "data_root": 1, "split": 1, "n": 1, "out": 3,
         "fresh": 3}


class UsageError(Exception):
    """A command-line mistake, reported as one line with exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def shown_default(leaf, cls=None) -> str:
    meta = leaf.meta
    if leaf.name == "out" and cls is not None and meta["shown"] == "runs/<command>":
        return cls.DEFAULT_OUT
    if meta["shown"] is not None or meta["required"]:
        return meta["shown"] or "required"
    value = leaf.default
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return "none" if value is None else str(value)


def base_type(typ):
    """(the type a flag converts to, its Literal choices or None) for an annotation such as ``float | None`` or
    ``int | Literal["auto"]`` (a number or one of the words)."""
    if isinstance(typ, types.UnionType) or typing.get_origin(typ) is typing.Union:
        options = [a for a in typing.get_args(typ) if a is not type(None)]
        if len(options) > 1:
            return either(options), None
        typ = options[0]
    if typing.get_origin(typ) is typing.Literal:
        values = typing.get_args(typ)
        return type(values[0]), list(values)
    return typ, None


def either(options):
    """A flag type for a union such as ``int | Literal["auto"]``: one of the words, else the number."""
    words = [v for o in options if typing.get_origin(o) is typing.Literal for v in typing.get_args(o)]
    numbers = [o for o in options if o in (int, float)]

    def convert(text):
        if text in words:
            return text
        for number in numbers:
            try:
                return number(str(text))
            except ValueError:
                continue
        raise ValueError(text)

    convert.__name__ = " or ".join([*(n.__name__ for n in numbers), *map(repr, words)])
    return convert


def flags_of(leaf) -> tuple:
    return leaf.meta["flags"] or ("--" + leaf.name.replace("_", "-"),)


def add_option(p: argparse.ArgumentParser, leaf, cls=None) -> None:
    meta, (base, literal) = leaf.meta, base_type(leaf.type)
    kw = {"default": argparse.SUPPRESS,
          "help": f"{meta['help']} (default: {shown_default(leaf, cls)})".replace("%", "%%")}
    if base is bool:
        kw["action"] = argparse.BooleanOptionalAction   # --x and --no-x: a typed flag wins over YAML either way
    elif base is list or typing.get_origin(base) is list:
        kw.update(nargs="+", type=meta["of"] or str)
    else:
        kw["type"] = base
    if meta["choices"] or literal:
        kw["choices"] = meta["choices"] or literal
    if meta["positional"]:
        p.add_argument(leaf.name, nargs="?", metavar=meta["metavar"] or leaf.name.upper(), **kw)
        return
    if meta["metavar"]:
        kw["metavar"] = meta["metavar"]
    p.add_argument(*flags_of(leaf), dest=leaf.name, **kw)


def command_leaves(cls) -> list:
    """A command's flags (groups flattened); two options of one name in one command are a programming error."""
    out, seen = leaves(cls), {}
    for leaf in out:
        if leaf.name in seen:
            raise TypeError(f"{cls.__name__}: option {leaf.name!r} is in {'.'.join(seen[leaf.name])} and "
                            f"{'.'.join(leaf.path)}; give one of them another name or leave it out with group(only=)")
        seen[leaf.name] = leaf.path
    return out


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
        for leaf in sorted(command_leaves(cls), key=lambda o: ORDER.get(o.name, 2)):
            add_option(p, leaf, cls)
        for flags, kw in GLOBAL:
            p.add_argument(*flags, default=argparse.SUPPRESS, **{**kw, "help": argparse.SUPPRESS})
    return ap


def read_yaml(path: Path) -> dict:
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
    return data


def convert(leaf, value, key, path: Path, command: str):
    """A YAML value as the option's type, refused as a typed flag would be."""
    meta, (base, literal) = leaf.meta, base_type(leaf.type)
    if base is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"setting {key!r} in {path} must be true or false, got {value!r}")
        return value
    many = base is list or typing.get_origin(base) is list
    if isinstance(value, list) and not many:
        raise ConfigError(f"setting {key!r} in {path} takes one value, got a list")
    if isinstance(value, (dict, bool)) or value is None:
        raise ConfigError(f"setting {key!r} in {path} has the wrong type ({value!r}); see 'robustmix {command} "
                          "--help'")
    typ, choices = (meta["of"] or str) if many else base, meta["choices"] or literal

    def one(v):
        if isinstance(v, (dict, list, bool)) or v is None:
            raise ConfigError(f"setting {key!r} in {path} has the wrong type ({v!r})")
        try:
            out = typ(str(v)) if typ in (int, float) else typ(v)
        except (TypeError, ValueError):
            raise ConfigError(f"setting {key!r} in {path}: invalid {typ.__name__} value: {v!r}") from None
        if choices and out not in choices:
            raise ConfigError(f"setting {key!r} in {path}: invalid choice: {out!r} (choose from "
                              f"{', '.join(map(repr, choices))})")
        return out

    return [one(v) for v in (value if isinstance(value, list) else [value])] if many else one(value)


def yaml_settings(path: Path, cls, command: str) -> dict:
    """A YAML settings file merged as data: {option name: value}, each value converted and checked as its flag.

    A run's own settings.json works as such a file (it reruns that run): it also lists robustmix's internal knobs
    (``step_size``, ``restarts``, ...), which are passed over while they hold their defaults."""
    data, by_key, out, seen = read_yaml(path), {}, {}, {}
    leaves_of = command_leaves(cls)
    for leaf in leaves_of:
        for key in (leaf.name, *(f.lstrip("-").replace("-", "_") for f in flags_of(leaf) if f.startswith("--"))):
            by_key[key] = leaf   # a key may be the long option's name (samples) or the setting's (num_samples)
    names, internal = {leaf.name for leaf in leaves_of}, internal_defaults(cls)
    for key, value in data.items():
        if key in internal and key not in names and value == json.loads(json.dumps(internal[key])):
            continue
        if key == "command" and value == command:   # settings.json of older runs
            continue
        leaf = by_key.get(str(key).replace("-", "_"))
        if leaf is None and key in internal:
            raise ConfigError(f"setting {key!r} in {path} is robustmix's own (not an option of {command}); leave it "
                              f"at {json.dumps(internal[key])} or remove it")
        if leaf is None or leaf.meta["positional"]:
            raise ConfigError(f"unknown setting {key!r} in {path}; see 'robustmix {command} --help'")
        if leaf.name in seen:
            raise ConfigError(f"{path} gives {seen[leaf.name]!r} and {key!r}, two names of one setting "
                              f"({'/'.join(flags_of(leaf))}); keep one")
        seen[leaf.name] = key
        if value is None and leaf.default is None:
            continue                  # 'null' for an option whose default is none: as if not given
        out[leaf.name] = convert(leaf, value, key, path, command)
    return out


def parse_args(argv) -> argparse.Namespace:
    """The given settings only (defaults < YAML (--config) < flags typed on the command line)."""
    args = build_parser().parse_args(argv)
    if getattr(args, "config", None):
        typed = vars(args)
        from_yaml = yaml_settings(Path(args.config), TABLE[args.command], args.command)
        for a, b in getattr(TABLE[args.command], "EXCLUSIVE", ()):   # a typed flag replaces the file's other one
            for mine, other in ((a, b), (b, a)):
                if mine in typed and other in from_yaml:
                    del from_yaml[other]
        args = argparse.Namespace(**{**from_yaml, **typed})
    return args


def make_config(args: argparse.Namespace):
    """The command's config from the given settings (each group checks itself once) and the run context."""
    given = {k: v for k, v in vars(args).items() if k not in ("command", "config") + GLOBAL_DESTS}
    cls = TABLE[args.command]
    for leaf in command_leaves(cls):   # required: checked on the merged settings (a typed flag or the YAML file)
        if leaf.meta["required"] and leaf.name not in given:
            flag = max(flags_of(leaf), key=len)
            raise UsageError(f"{flag} is required: type it, or put '{flag.lstrip('-')}: ...' in the --config YAML file")
    for a, b in getattr(cls, "EXCLUSIVE", ()):
        if a in given and b in given:
            flag = {"n": "-n"}
            raise ConfigError(f"{flag.get(a, '--' + a.replace('_', '-'))} and {flag.get(b, '--' + b.replace('_', '-'))} "
                              "do not go together; give one")
    ctx = Context(device=getattr(args, "device", "auto"), threads=getattr(args, "threads", None),
                  import_code=getattr(args, "import_code", False), channels_last=getattr(args, "channels_last", False))
    if ctx.threads is not None and ctx.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {ctx.threads}")
    ctx.torch_device()
    return build(cls, given), ctx


DESCRIBE = ("file", "model", "std", "rob", "mixer", "alpha", "scale", "power", "bias", "top_k", "std_map", "dataset",
            "data", "split", "n", "indices", "norm", "eps", "sigma")
OUTPUTS = ("out", "export", "onnx")
NONLINEAR_ONLY = {"scale", "power", "bias", "top_k", "std_map"}


def describe(cfg) -> str:
    """The console's first line: which models, data and threat model this run uses, and where it writes."""
    leaves_of = command_leaves(type(cfg))
    values = {leaf.name: leaf_value(cfg, leaf) for leaf in leaves_of}
    defaults = {leaf.name: leaf.default for leaf in leaves_of}
    skip = ({"std", "rob", "alpha"} if values.get("model") else set()) | \
        ({"n"} if values.get("indices") else set()) | \
        ({"mixer"} if values.get("mixer", "linear") == "linear" else set()) | \
        (NONLINEAR_ONLY if values.get("mixer") != "nonlinear" else set()) | \
        ({"dataset"} if values.get("data") and values.get("dataset") == defaults.get("dataset") else set())  # --data
    parts = [f"{k}={values[k]}" for k in DESCRIBE if k not in skip and values.get(k) is not None]
    outputs = [str(values[k]) for k in OUTPUTS if values.get(k)]
    return f"robustmix {cfg.NAME}: {' '.join(parts)} -> {', '.join(outputs)}" if parts and outputs else ""


def leaf_value(cfg, leaf):
    for name in leaf.path:
        cfg = getattr(cfg, name)
    return cfg


def finish(result, cfg, ctx: Context) -> None:
    """Save a summary with its settings and report (only after the run succeeded; all three appear together, or
    none if writing one fails); print what the user needs."""
    if isinstance(result, str):
        print(result)
        return
    from .reports import terminal_summary, write_report

    result.command = ctx.command_line
    result.data = getattr(getattr(cfg, "inputs", None), "data_used", None) or result.data
    out = cfg.output.out_path
    with all_or_nothing():
        result.save(out / "summary.json")
        write_json(out / "settings.json", {k: v for k, v in flat(cfg).items() if k != "fresh"})
        with folder_written_as(out) as tmp:
            paths = {k: out / Path(v).relative_to(tmp) for k, v in write_report(result, tmp).items()}
    print(terminal_summary(result))
    print(f"\nwrote {out}/summary.json; report: {paths['html']}")


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


def prefix(command: str) -> str:
    """How every error line starts: ``robustmix CMD`` (``robustmix`` before a command is known)."""
    return f"robustmix {command}" if command else "robustmix"


def run_cli(argv: list[str]) -> int:
    debug = "--debug" in argv
    try:
        args = parse_args(argv)
        cfg, ctx = make_config(args)
    except UsageError as exc:
        command = next((a for a in argv if a in TABLE), "")
        print(f"{prefix(command)}: error: {exc} (see 'robustmix {command + ' ' if command else ''}--help')",
              file=sys.stderr)
        return 2
    except RobustMixError as exc:
        if debug:
            raise
        print(f"{prefix(next((a for a in argv if a in TABLE), ''))}: error: {' '.join(str(exc).split())}",
              file=sys.stderr)
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
        output = getattr(cfg, "output", None)
        if output is not None and output.fresh:
            output.move_aside_outputs()
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
        out = getattr(getattr(cfg, "output", None), "out_path", None)
        kept = recorded_examples(out)
        print(f"robustmix {args.command}: interrupted; " + (
            f"{kept} example record(s) are kept in {out}: rerun the same command to resume" if kept else
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

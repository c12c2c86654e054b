"""The commands: one config dataclass each (its flags, defaults, help and checks) with ``run(context)``.

``robustmix.cli`` generates the command line from :data:`COMMANDS`; to add a command, write a config
dataclass with ``NAME``, ``HELP``, ``EXAMPLES`` and a ``run`` that returns a typed summary, and list it here
(docs/architecture.md shows one end to end).
"""

from .attacks import AttackCommand, EvaluateCommand, SweepCommand, TradeoffCommand
from .basics import DemoCommand, ListCommand, ReportCommand, TrainCommand
from .certified import CertifyCommand, CertifyFrontCommand, Fig3Command
from .common import Context
from .mixers import CalibrateCommand, MixCommand, ParetoCommand
from .verify import VerifyCommand

COMMANDS = [DemoCommand, SweepCommand, TradeoffCommand, AttackCommand, EvaluateCommand, ParetoCommand,
            CertifyCommand, CertifyFrontCommand, Fig3Command, CalibrateCommand, MixCommand, TrainCommand, ReportCommand, ListCommand, VerifyCommand]

__all__ = ["COMMANDS", "Context"]

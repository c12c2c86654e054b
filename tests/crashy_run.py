"""Test helper: the robustmix CLI with rank 1 dying once, right after its first finished batch.

Used under torchrun to check that a restarted job resumes from its records.
The marker file (argv[1]) makes the crash happen on the first attempt only.
"""

import os
import sys
from pathlib import Path

from robustmix.cli import main
from robustmix.experiments import runner

marker = Path(sys.argv[1])
real_append = runner.RecordFile.append


def append_then_die(self, recs):
    real_append(self, recs)
    if os.environ.get("RANK") == "1" and not marker.exists():
        marker.write_text("crashed once")
        os._exit(17)


runner.RecordFile.append = append_then_die
sys.exit(main(sys.argv[2:]))

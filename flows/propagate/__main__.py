"""``python -m flows.propagate [worker options]``: the propagation dataflow in this process.

The same as ``python -m flows.worker propagate ...`` once ``propagate`` is registered in
:data:`flows.worker.FLOWS` (``"propagate": flows.propagate.flow.build_from_args``); until then this
entry point registers it itself. ``--only <target>`` (repeatable) limits it to some targets.
"""

from __future__ import annotations

import sys

from flows import worker
from flows.propagate.flow import build_from_args

if __name__ == "__main__":
    worker.FLOWS.setdefault("propagate", build_from_args)
    sys.exit(worker.main(["propagate", *sys.argv[1:]]))

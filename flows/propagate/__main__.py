"""``python -m flows.propagate [worker options]``: the propagation dataflow in this process.

The same as ``python -m flows.worker propagate ...``. ``--only <target>`` (repeatable) limits it
to some targets.
"""

from __future__ import annotations

import sys

from flows import worker

if __name__ == "__main__":
    sys.exit(worker.main(["propagate", *sys.argv[1:]]))

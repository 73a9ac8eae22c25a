"""Run the ``dynlearn`` command with every chunk of epochs taking at least ``DELAY`` seconds (test-only).

Usage: ``python tests/slow_cli.py DELAY ARGS...`` (e.g. ``0.4 run exp.toml --out run.zarr``). The kill-mid-run
tests use it to widen the window in which a run is between two commits; the delay is patched into this process
only (after each chunk is handed to the store writer), never read by dynlearn itself.
"""

from __future__ import annotations

import sys
import time


def main() -> None:
    delay = float(sys.argv.pop(1))
    from dynlearn.cli import main as cli
    from dynlearn.store import ChunkWriter

    submit = ChunkWriter.submit

    def slow_submit(self, blocks, commit):
        submit(self, blocks, commit)
        time.sleep(delay)

    ChunkWriter.submit = slow_submit
    sys.argv[0] = "dynlearn"
    cli()


if __name__ == "__main__":
    main()

"""Run a command under resource limits: ``python -m viddiff_mini.grading.limits AS FSIZE -- CMD...``

``AS`` caps the address space (bytes, ``resource.RLIMIT_AS``: a submission that allocates
too much gets ``MemoryError``), ``FSIZE`` caps the size of any file the process writes
(``RLIMIT_FSIZE``: a submission printing without end is stopped by ``SIGXFSZ`` instead of
filling the disk); core dumps are off. The limits are set here and then this process
``exec``-s the command, so they apply to it and everything it starts.

Why a launcher instead of ``subprocess.Popen(preexec_fn=...)``: ``viddiff grade --jobs N``
starts processes from several threads, and ``preexec_fn`` is documented as unsafe in the
presence of threads (it runs Python code between fork and exec).
"""

from __future__ import annotations

import os
import resource
import sys


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: python -m viddiff_mini.grading.limits AS_BYTES FSIZE_BYTES -- CMD...",
              file=sys.stderr)
        return 2
    as_bytes, fsize = int(argv[0]), int(argv[1])
    if as_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (as_bytes, as_bytes))
    if fsize > 0:
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    cmd = argv[3:]
    os.execvp(cmd[0], cmd)
    return 127  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`billing rehearse <scenario.yaml>`: the operators' rehearsal command (docs/rehearsal.md)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from devstack import rehearsal

USAGE = """usage: billing rehearse <scenario.yaml> [--out result.json]
       billing schema             (JSON Schema of the printed result)
       billing serve [--port N]   (POST /rehearsals, the same over HTTP)"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["rehearse"]:
        return rehearsal.main(["run", *args[1:]])
    if args[:1] in (["schema"], ["serve"]):
        return rehearsal.main(args)
    print(USAGE, file=sys.stderr)
    return 0 if args[:1] in (["-h"], ["--help"]) else 2


if __name__ == "__main__":
    sys.exit(main())

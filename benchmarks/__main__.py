"""`python -m benchmarks [close] …`: metering ingest (default, `benchmarks.cli`) or month close at scale."""

import sys

from benchmarks import cli, close

COMMANDS = {"close": close.main}

if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
    raise SystemExit(COMMANDS[sys.argv[1]](sys.argv[2:]))
raise SystemExit(cli.main())

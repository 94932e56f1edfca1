"""`python -m benchmarks [close|billing] …`: metering ingest (default, `benchmarks.cli`), month close or billing run at scale."""

import sys

from benchmarks import billing, cli, close

COMMANDS = {"close": close.main, "billing": billing.main}

if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
    raise SystemExit(COMMANDS[sys.argv[1]](sys.argv[2:]))
raise SystemExit(cli.main())

"""`python -m benchmarks [close|billing|fuzz|partners] …`: metering ingest (default, `benchmarks.cli`), month close or billing run at scale, the long fuzz run, the partner program at scale."""

import sys

from benchmarks import billing, cli, close, fuzz, partners

COMMANDS = {"close": close.main, "billing": billing.main, "fuzz": fuzz.main, "partners": partners.main}

if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
    raise SystemExit(COMMANDS[sys.argv[1]](sys.argv[2:]))
raise SystemExit(cli.main())

"""`python -m benchmarks [close|billing|fuzz] …`: metering ingest (default, `benchmarks.cli`), month close or billing run at scale, the long fuzz run."""

import sys

from benchmarks import billing, cli, close, fuzz

COMMANDS = {"close": close.main, "billing": billing.main, "fuzz": fuzz.main}

if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
    raise SystemExit(COMMANDS[sys.argv[1]](sys.argv[2:]))
raise SystemExit(cli.main())

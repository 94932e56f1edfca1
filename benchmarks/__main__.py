"""`python -m benchmarks [close|billing|fuzz|partners|procountor] …`: metering ingest (default, `benchmarks.cli`), month close, billing run, the long fuzz run, the partner program, Procountor delivery."""

import sys

from benchmarks import billing, cli, close, fuzz, partners, procountor

COMMANDS = {
    "close": close.main,
    "billing": billing.main,
    "fuzz": fuzz.main,
    "partners": partners.main,
    "procountor": procountor.main,
}

if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
    raise SystemExit(COMMANDS[sys.argv[1]](sys.argv[2:]))
raise SystemExit(cli.main())

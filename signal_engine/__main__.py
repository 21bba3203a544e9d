"""`python -m signal_engine` runs the command line."""

from signal_engine.cli import main

raise SystemExit(main())

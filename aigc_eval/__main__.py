"""`python -m aigc_eval SUBCOMMAND [flags]`, the same as the `aigc-eval` command."""

from aigc_eval.cli import main

raise SystemExit(main())

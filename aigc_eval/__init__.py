"""aigc_eval: scores AI-generated e-commerce images, stage by stage, from CSV to CSV.

The stage scripts at the repository's root are thin entry points into this package;
`aigc-eval SUBCOMMAND` (or `python -m aigc_eval SUBCOMMAND`) runs the same stages.
"""

import logging

# Every module logs here; the scripts send it to stderr (cli.support.setup_logging).
log = logging.getLogger("aigc_eval")

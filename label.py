"""Label a scored run in the browser (keyboard first, every verdict fsynced to labels.csv), or move
it to and from Label Studio. See docs/labelling.md.

    python label.py --scores result_total.csv --labels labels.csv --labeler qa1
    python label.py --scores result_total.csv --export-label-studio tasks.json
    python label.py --import-label-studio export.json --labels labels.csv
"""

from aigc_eval.cli.label import main

if __name__ == "__main__":
    raise SystemExit(main())

"""Merge, decide and report; or score a CSV with both models first; or compare two runs.

Reads result_clip.csv and result_is.csv (+ result_is.json) and writes result_total.csv,
result_category.csv and report.html. `--input X.csv` scores X.csv with both models in one
pass first; `--compare A.csv B.csv` writes compare.csv instead.

    python main.py --clip_weight 0.6 --is_weight 0.4
    python main.py --input samples/sample.csv
"""

from aigc_eval.cli.score import main

if __name__ == "__main__":
    raise SystemExit(main())

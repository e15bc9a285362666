"""Inception Score stage: output.csv -> result_is.csv and result_is.json, with Inception-v3.

Reads one row per generated image and writes each image's top-1 ImageNet class, confidence
and KL term, and the batch's Inception Score with its interval.

    python evaluate_is.py --input output.csv --output result_is.csv
"""

from aigc_eval.cli.inception import main

if __name__ == "__main__":
    raise SystemExit(main())

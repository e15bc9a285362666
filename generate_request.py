"""Generation stage: data.csv -> images over Dubbo -> output.csv and error.csv, resumable.

One call per input row; every row ends in exactly one of the two files, and a rerun
continues where the last one stopped.

    python generate_request.py --input data.csv --output output.csv --error error.csv
"""

from aigc_eval.cli.generate import main

if __name__ == "__main__":
    raise SystemExit(main())

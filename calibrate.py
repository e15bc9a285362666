"""Learn what people accept and report how every score agrees with them: result_total.csv +
labels.csv -> calibration.json, calibration_report.csv, calibration_report.html.

    python calibrate.py --scores result_total.csv --labels labels.csv --output calibration.json
"""

from aigc_eval.cli.calibrate import main

if __name__ == "__main__":
    raise SystemExit(main())

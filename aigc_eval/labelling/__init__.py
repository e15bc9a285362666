"""Verdicts from people: the labels CSV format (format.py) that the review page writes and the
calibration stage reads."""

"""Decisions: merging the stages' results into a weighted total (merge.py), regenerate rules and
the per-category table (rules.py), the A/B comparison (compare.py), report.html (report.py),
and writing a run's outputs (outputs.py)."""

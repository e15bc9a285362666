"""Learning what people accept: labels (labels.py, retries.py), the term columns a fit reads
(terms.py), the fit and its cross-validation (fit.py), agreement figures (agreement.py), the
calibration file and its pure scorer (model.py), the reports (report.py, report_html.py) and
the stage that ties them together (stage.py)."""

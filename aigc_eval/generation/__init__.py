"""Generation over Dubbo: the service client (dubbo.py, the article's dubbo_util), request
templates (request_template.py), the journal and lock (state.py), and the run (runner.py)."""

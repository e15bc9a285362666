"""Score images online over HTTP (FastAPI + uvicorn): POST /v1/score with one item or a list.

Same scoring core, cache, precision and decisions as main.py --input; OpenAPI at /openapi.json,
docs at /docs; /healthz, /readyz, /metrics. See docs/service.md.

    python serve.py --port 8000 --reference-marginal logits.npy
"""

from aigc_eval.cli.serve import main

if __name__ == "__main__":
    raise SystemExit(main())

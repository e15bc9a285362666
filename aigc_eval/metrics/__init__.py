"""The metric interface: one module per metric (clip, inception, product, product_clip), the
registry that finds them and plugins (registry.py, entry-point group `aigc_eval.metrics`), and the
one decision every sink calls (decide.py). docs/metrics.md describes writing a metric."""

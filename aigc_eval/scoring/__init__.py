"""Scoring: the pure metric maths (metrics.py), model loading, the lanes that share the models'
work, the image pipeline, the score cache, prompt cleaning, and the CLIPScore and Inception
scorers; combined.py scores a CSV with both in one pass."""

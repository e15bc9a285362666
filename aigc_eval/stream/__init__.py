"""NSQ stream workers: score each generated image as NSQ delivers it (evaluate_stream.py).

shards.py: a worker's append-only files (shard CSV, logits sidecar, published marks);
worker.py: the reader, batching through the scoring core, FIN after fsync; publish.py: result
messages on --result-topic; merge.py: shards -> the batch run's result files (main.py --shards).
"""

"""Stream stage: NSQ topic generate_img_data_collect_topic -> result_stream.<worker>.csv per worker.

Scores each generated image as NSQ delivers it (CLIPScore, Inception, product checks), appends
it to this worker's shard with its logits beside it, and publishes a JSON result per image on
generate_img_score_topic; `python main.py --shards 'result_stream.*.csv'` merges the shards.

    python evaluate_stream.py --worker-name gpu0 --device cuda:0 --output-dir /srv/eval
    python evaluate_stream.py --idle-timeout 300 --max-messages 20000   # from cron
"""

from aigc_eval.cli.stream import main

if __name__ == "__main__":
    raise SystemExit(main())

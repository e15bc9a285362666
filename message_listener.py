"""Collection stage: NSQ topic generate_img_data_collect_topic -> output.csv, each message once.

Subscribes to the generation service's messages and appends one row per generated image;
messages that cannot become rows go to a dead-letter file.

    python message_listener.py --output output.csv
    python message_listener.py --idle-timeout 60 --max-messages 5000   # from cron
"""

from aigc_eval.cli.listen import main

if __name__ == "__main__":
    raise SystemExit(main())

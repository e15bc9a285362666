"""Collection from NSQ: message bodies to rows (messages.py, the article's consumer_util), the
listener's group commit and dead letters (collector.py), and the pynsq reader (listener.py)."""

"""Reading and writing: stage CSVs (atomic writes, one-line input errors), fetching and decoding
images through one guarded path and cache, and crash-safe append-only logs."""

"""Every exit code of every script, defined once; `--help` and docs/exit_codes.md show these tables.

The values are the ones scripts and cron jobs already rely on, so a code can mean different things
in different scripts (4 is "service unusable" for generate_request.py, "locked" for the listener);
within one script each code has one meaning.
"""

from __future__ import annotations

OK = 0
ROW_ERRORS = 1  # the scoring stages: finished, some rows have status=error
USAGE = 2  # bad arguments or unusable input; nothing was written
NO_WEIGHTS = 3  # model weights missing or unreadable
INTERRUPTED = 130

# message_listener.py and evaluate_stream.py
NSQ_DEAD_LETTERS = 1  # stopped as asked; some messages of this run went to the dead-letter file
NSQ_LOCKED = 4  # another listener (worker of this name) holds the output's lock
NSQ_OUTPUT_BROKEN = 5  # a failed write could not be undone; restart to repair the file
NSQ_NO_NSQD = 6  # --idle-timeout passed without ever reaching nsqd

# generate_request.py
GENERATE_ROW_ERRORS = 1  # finished; the error file has rows
GENERATE_SERVICE = 4  # the service cannot be used (ZooKeeper, no provider, no such method)
GENERATE_LOCKED = 5  # another run is writing the same output or error file

# serve.py
SERVE_BIND = 4  # the address could not be bound

TABLE: dict[str, tuple[tuple[int, str], ...]] = {
    "scoring": ((OK, "all rows scored"), (ROW_ERRORS, "finished, some rows have status=error"),
                (USAGE, "bad arguments or input (nothing written)"), (NO_WEIGHTS, "model weights missing")),
    "listen": ((OK, "stopped as asked"), (NSQ_DEAD_LETTERS, "stopped as asked, some messages went to the dead-letter file"),
               (USAGE, "bad arguments or unusable output/mapping file"),
               (NSQ_LOCKED, "another listener holds the output's lock"),
               (NSQ_OUTPUT_BROKEN, "a failed write could not be undone (restart repairs the file)"),
               (NSQ_NO_NSQD, "never reached nsqd before --idle-timeout")),
    "stream": ((OK, "stopped as asked (signal, --max-messages, --idle-timeout)"),
               (NSQ_DEAD_LETTERS, "stopped as asked, some messages went to the dead-letter file"),
               (USAGE, "bad arguments or an unusable shard/mapping file"), (NO_WEIGHTS, "model weights missing"),
               (NSQ_LOCKED, "another worker of this name holds the shard's lock"),
               (NSQ_OUTPUT_BROKEN, "a failed write could not be undone (restart repairs the shard)"),
               (NSQ_NO_NSQD, "never reached nsqd before --idle-timeout")),
    "generate": ((OK, "every row generated"), (GENERATE_ROW_ERRORS, "finished, the error file has rows"),
                 (USAGE, "bad arguments or input"),
                 (GENERATE_SERVICE, "service unusable (ZooKeeper unreachable, no provider, no such service or method)"),
                 (GENERATE_LOCKED, "another run holds the lock"), (INTERRUPTED, "interrupted (finished rows are kept)")),
    "serve": ((OK, "stopped by SIGTERM/SIGINT"), (USAGE, "bad arguments or an unusable file"),
              (NO_WEIGHTS, "model weights missing or unreadable"), (SERVE_BIND, "the address could not be bound")),
}


def help_line(script: str) -> str:
    """'exit codes: 0 ...; 1 ...' for a script's --help."""
    return "exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in TABLE[script])

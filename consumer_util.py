"""The article's consumer_util: NSQ message bodies -> rows of output.csv, and prompt cleaning.

Kept importable under the article's name; the code lives in aigc_eval.collection.messages.

    from consumer_util import message_to_rows, clean_prompt
"""

from aigc_eval.collection.messages import (  # noqa: F401  (re-exported under the article's name)
    DEFAULT_MAPPING,
    LISTENER_COLUMNS,
    FieldMapping,
    MalformedMessage,
    clean_prompt,
    load_mapping,
    lookup,
    message_to_rows,
    parse_body,
)

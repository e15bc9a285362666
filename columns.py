"""CSV column names, output keys and defaults shared by every stage and by the tests.

Each name is defined here once; scripts and tests import it instead of repeating the string.
"""

# Input columns (overridable with --id-col, --prompt-col, --image-col).
ID = "id"
PROMPT = "prompt"
IMAGE_URL = "image_url"
CATEGORY = "category"
PRODUCT_IMAGE_URL = "product_image_url"

# Written by message_listener.py after the columns above: the body's timestamp as the
# producer sent it, NSQ's own timestamp (nanoseconds since the epoch, when nsqd received
# the message) and NSQ's message id, which makes redeliveries recognisable.
TIMESTAMP = "timestamp"
NSQ_TIMESTAMP = "nsq_timestamp"
NSQ_MESSAGE_ID = "nsq_message_id"

# Columns every scoring output carries after the input's id, prompt and image.
STATUS = "status"
ERROR = "error"
STATUS_OK = "ok"
STATUS_ERROR = "error"

# result_clip.csv
CLIP_SCORE = "clip_score"
PROMPT_TOKENS = "prompt_tokens"
PROMPT_TRUNCATED = "prompt_truncated"

# result_is.csv
TOP1_CLASS = "top1_class"
TOP1_LABEL = "top1_label"
TOP1_CONFIDENCE = "top1_confidence"
KL = "kl"

# result_total.csv
CLIP_NORM = "clip_norm"
IS_NORM = "is_norm"
TOTAL_SCORE = "total_score"

# result_is.json, named as torch-fidelity names its keys.
KEY_IS_MEAN = "inception_score_mean"
KEY_IS_STD = "inception_score_std"
KEY_NUM_IMAGES = "num_images"
KEY_SPLITS = "splits"
KEY_NUM_CLASSES = "num_classes"
KEY_NUM_ERRORS = "num_errors"
KEY_WARNING = "warning"

# Default file names, as in the article's commands.
DEFAULT_INPUT = "output.csv"
DEFAULT_CLIP_OUTPUT = "result_clip.csv"
DEFAULT_IS_OUTPUT = "result_is.csv"
DEFAULT_TOTAL_OUTPUT = "result_total.csv"
DEFAULT_LISTENER_OUTPUT = DEFAULT_INPUT  # the listener writes what the evaluators read
DEFAULT_NSQ_TOPIC = "generate_img_data_collect_topic"
DEFAULT_NSQ_CHANNEL = "aigc_image_eval"
DEFAULT_NSQD_TCP_ADDRESS = "127.0.0.1:4150"

# Keys of a dead-letter record (one JSON object per line).
KEY_DL_MESSAGE_ID = "nsq_message_id"
KEY_DL_REASON = "reason"
KEY_DL_BODY = "body"
KEY_DL_BODY_BASE64 = "body_base64"
KEY_DL_ATTEMPTS = "attempts"
KEY_DL_NSQ_TIMESTAMP = "nsq_timestamp"
KEY_DL_AT = "dead_lettered_at"

# Below this many images the article found IS unstable.
IS_MIN_STABLE_IMAGES = 500

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
SESSION_ID = "session_id"  # the merchant's session (message_listener.py --map session_id=PATH), for retry labels

# Columns every scoring output carries after the input's id, prompt and image.
STATUS = "status"
ERROR = "error"
STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_SKIPPED = "skipped"  # nothing to score, e.g. a prompt with no visual description left

# result_clip.csv
CLIP_SCORE = "clip_score"
RAW_PROMPT = "raw_prompt"  # the prompt as given, when the scored prompt is the cleaned one
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
PRODUCT_ERROR = "product_error"  # why an image has no product term (its product check failed)
P_ACCEPT = "p_accept"
GENERATOR_VERSION = "generator_version"  # an input column: the generator's model or version (the results store)  # with --calibration: the calibrated probability that people accept the image
REGENERATE = "regenerate"  # reasons to regenerate the image, "; "-separated; empty when it is fine

# The run summary (main.py), shown on stderr and in report.html.
SUM_ROWS = "rows"
SUM_OK = "ok"
SUM_ERRORS = "errors"
SUM_SKIPPED = "skipped"
SUM_CLIP_MEAN = "clip_score_mean"
SUM_TOTAL_MEAN = "total_score_mean"
SUM_IS_MEAN = "inception_score_mean"
SUM_IS_STD = "inception_score_std"
SUM_IS_CI_LOW = "inception_score_ci_low"
SUM_IS_CI_HIGH = "inception_score_ci_high"
SUM_IS_IMAGES = "num_images"
SUM_REGENERATE = "regenerate_count"
SUM_CLIP_WEIGHT = "clip_weight"
SUM_IS_WEIGHT = "is_weight"
SUM_WARNINGS = "warnings"
SUM_WEIGHTS = "weights"
SUM_CALIBRATION = "calibration"  # with --calibration: its digest, date and threshold  # every weighted metric's weight in the total, by metric name
SUM_PRODUCT_WEIGHT = "product_weight"  # with product checks only
SUM_PRODUCT_MEAN = "product_score_mean"
SUM_PRODUCT_ISSUES = "product_issue_count"

# One row of the per-category table (category_report.csv and report.html).
CAT_CATEGORY = "category"
CAT_COUNT = "count"
CAT_SHARE = "share"
CAT_CLIP_MEAN = "clip_score_mean"
CAT_CLIP_STD = "clip_score_std"
CAT_TOTAL_MEAN = "total_score_mean"
CAT_TOTAL_STD = "total_score_std"
CAT_IS = "inception_score"
CAT_IS_IMAGES = "is_images"
CAT_REGENERATE = "regenerate_count"
CAT_PRODUCT_MEAN = "product_score_mean"  # with product checks only
CAT_PRODUCT_ISSUES = "product_issue_count"  # images with at least one product issue

# result_is.json, named as torch-fidelity names its keys.
KEY_IS_MEAN = "inception_score_mean"
KEY_IS_STD = "inception_score_std"
KEY_IS_CI_LOW = "inception_score_ci_low"
KEY_IS_CI_HIGH = "inception_score_ci_high"
KEY_PER_CATEGORY = "per_category"
KEY_NUM_IMAGES = "num_images"
KEY_SPLITS = "splits"
KEY_NUM_CLASSES = "num_classes"
KEY_NUM_ERRORS = "num_errors"
KEY_WARNING = "warning"

# output.csv of generate_request.py: one row per generated image. `id` is the input row's id
# plus "_" and the image's index; `source_id` keeps the input id (resume uses it).
SOURCE_ID = "source_id"

# error.csv of generate_request.py: the input row's columns, then why and when it failed.
ERROR_TYPE = "error_type"
ERROR_MESSAGE = "error_message"
ATTEMPTS = "attempts"
FAILED_AT = "failed_at"
# error_type of a row rejected before any call (missing id, duplicate id, empty field).
ERROR_TYPE_INVALID_ROW = "InvalidRow"

# Default file names, as in the article's commands.
DEFAULT_INPUT = "output.csv"
DEFAULT_CLIP_OUTPUT = "result_clip.csv"
DEFAULT_IS_OUTPUT = "result_is.csv"
DEFAULT_PRODUCT_OUTPUT = "result_product.csv"  # its columns: aigc_eval/product/names.py
DEFAULT_DISTRIBUTION_OUTPUT = "result_distribution.json"  # main.py --reference
DEFAULT_TOTAL_OUTPUT = "result_total.csv"
DEFAULT_REPORT = "report.html"
DEFAULT_CATEGORY_OUTPUT = "result_category.csv"
DEFAULT_COMPARE_OUTPUT = "compare.csv"
# generate_request.py reads data.csv and writes output.csv, the evaluators' default input.
DEFAULT_GENERATE_INPUT = "data.csv"
DEFAULT_GENERATE_OUTPUT = DEFAULT_INPUT
DEFAULT_GENERATE_ERROR = "error.csv"
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

# --precision choices (model_loading.resolve_precision says what each means).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# Below this many images the article found IS unstable.
IS_MIN_STABLE_IMAGES = 500

# --- NSQ stream workers (evaluate_stream.py, aigc_eval/stream/) --------------------------------
# Extra columns of a worker's shard result_stream.<worker>.csv, beside the listener's columns,
# the CLIP fields, the top-1 fields and the product fields.
REQUEST_ID = "request_id"  # the message's request id (an image id is request id, "_", index)
WORKER = "worker"  # --worker-name of the worker that scored the image
IMAGE_ERROR = "image_error"  # why the image could not be fetched or decoded (no logits); empty when it was
PRODUCT_STATUS = "product_status"  # the product check's status (its error goes to PRODUCT_ERROR); empty: not checked
SCORED_AT = "scored_at"  # when the worker wrote the row (UTC, ISO 8601)
DEFAULT_STREAM_PREFIX = "result_stream"  # shards are <prefix>.<worker>.csv in --output-dir
DEFAULT_STREAM_CHANNEL = "aigc_image_eval_stream"  # not the listener's: both may run on one topic
DEFAULT_RESULT_TOPIC = "generate_img_score_topic"
# Keys of a logits sidecar record (result_stream.<worker>.logits.jsonl) and of a published mark.
KEY_STREAM_ID = "id"
KEY_STREAM_LOGITS = "logits_f32le_b64"  # the Inception logits, float32 little-endian, base64
# Keys of a result message on --result-topic (one JSON object per scored image).
KEY_RESULT_ID = "id"
KEY_RESULT_REQUEST_ID = "request_id"
KEY_RESULT_IMAGE_URL = "image_url"  # the scored image, so a collector needs nothing else
KEY_RESULT_CATEGORY = "category"  # null when the image's row has none
KEY_RESULT_WORKER = "worker"
KEY_RESULT_STATUS = "status"
KEY_RESULT_ERROR = "error"
KEY_RESULT_SCORES = "scores"
KEY_RESULT_TOTAL = "total_score"
KEY_RESULT_P_ACCEPT = "p_accept"
GENERATOR_VERSION = "generator_version"  # an input column: the generator's model or version (the results store)  # with --calibration only
KEY_RESULT_IS_TERM = "is_term"
KEY_RESULT_REGENERATE = "regenerate"
KEY_RESULT_NSQ_MESSAGE_ID = "nsq_message_id"
KEY_RESULT_SCORED_AT = "scored_at"

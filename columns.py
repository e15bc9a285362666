"""CSV column names, output keys and defaults shared by every stage and by the tests.

Each name is defined here once; scripts and tests import it instead of repeating the string.
"""

# Input columns (overridable with --id-col, --prompt-col, --image-col).
ID = "id"
PROMPT = "prompt"
IMAGE_URL = "image_url"
CATEGORY = "category"
PRODUCT_IMAGE_URL = "product_image_url"

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
DEFAULT_TOTAL_OUTPUT = "result_total.csv"
# generate_request.py reads data.csv and writes output.csv, the evaluators' default input.
DEFAULT_GENERATE_INPUT = "data.csv"
DEFAULT_GENERATE_OUTPUT = DEFAULT_INPUT
DEFAULT_GENERATE_ERROR = "error.csv"

# Below this many images the article found IS unstable.
IS_MIN_STABLE_IMAGES = 500

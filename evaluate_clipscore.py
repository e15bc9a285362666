"""CLIPScore stage: output.csv -> result_clip.csv, with Chinese-CLIP.

Reads one row per generated image (id, prompt, image URL or path) and writes each image's
CLIPScore against its cleaned prompt, with status and error.

    python evaluate_clipscore.py --input output.csv --output result_clip.csv
"""

from aigc_eval.cli.clipscore import main

if __name__ == "__main__":
    raise SystemExit(main())

"""Product stage: output.csv -> result_product.csv, the merchant's cut-out against each generated image.

Finds the product in the generated image and measures whether it survived (structure, colour,
detail, painted-over area, outline) and how it is placed (coverage, centre, cut-off), with
classic vision and no model weights.

    python evaluate_product.py --input output.csv --output result_product.csv --profile amazon
"""

from aigc_eval.cli.product import main

if __name__ == "__main__":
    raise SystemExit(main())

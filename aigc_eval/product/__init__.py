"""Product fidelity and composition: is the merchant's cut-out intact in the generated image,
and is it placed as the marketplace asks? Classic vision (OpenCV, scikit-image), no weights.

names (columns, issue codes) · cutout (cut-out -> RGB + mask) · locate (where the product is;
placement, template_search, outline, silhouette)
· fidelity (is it unchanged) · composition (where it sits; marketplace PROFILES) · quality
(whole-image warnings) · check (check_product, thresholds, score). See docs/product_checks.md."""

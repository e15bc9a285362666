"""Product fidelity and composition: is the merchant's cut-out intact in the generated image,
and is it placed as the marketplace asks? Classic vision (OpenCV, scikit-image), no weights."""

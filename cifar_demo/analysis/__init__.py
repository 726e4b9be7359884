"""What the models answer and how well: evaluation, its cache, familiarity, robustness,
Grad-CAM, prediction, A/B studies. Plain data, cached per weights file; no UI."""

"""The sections of tools/benchmark.py (one module each) and what they share:
timing.py (alternated rounds, medians, ratios), steps.py (the project's and a
bare Keras training step), exports.py (the model an eval section attacks),
art_attacks.py (ART's side of the comparisons)."""

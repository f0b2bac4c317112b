"""The interpret stage's work: explanations, complexity and detection/fuzzing scores per feature."""

"""Reusable input pieces for image classifiers: TF-slim TFRecords, the pipeline and a classifier input_fn,
transforms, the dataset builder, demo and synthetic data."""

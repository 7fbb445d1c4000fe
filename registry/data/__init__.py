"""Reusable input pieces for image classifiers: TF-slim TFRecords, the dataset builder, demo and synthetic data."""

"""Scoring models: BG/NBD and Gamma-Gamma fitting, threshold calibration, params files."""

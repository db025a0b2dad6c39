"""Inference: the 4-stage recommender and its HTTP API."""

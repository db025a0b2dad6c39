"""Thin orchestration of the steps (data, features, train, evaluate); no business logic."""

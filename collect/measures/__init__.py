"""Measures of a trained model: each is one function plus its registry entry (see ``registry``)."""

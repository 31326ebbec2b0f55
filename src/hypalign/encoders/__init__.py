"""Encoders: text (transformers, MiniLM), and later images, proteins and molecules."""

"""Importers of authors' checkpoints and safe readers of foreign pickle files."""

"""Tests for sidetune.nn."""

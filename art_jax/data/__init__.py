"""Data: the record format, preprocessing jobs and the grain pipeline."""

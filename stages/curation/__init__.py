"""Rules of the curate stage, one module per concern.

Each module works on pandas Series or DataFrames and returns data: repaired or redacted text,
per-row reason codes for the rows it removes, and counts for the metrics. `pipeline.curate` runs
them in order and collects the removed rows into the quarantine table.
"""

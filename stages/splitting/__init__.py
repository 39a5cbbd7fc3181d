"""The split stage's parts: config, near-duplicate search, groups, strategies, leakage and stability.

`stages/split.py` is the entry point. `runner.split_rows` assigns every row to train, validation
or test (or to the quarantine) with one of five strategies, keeping groups whole; `leakage`
checks the result and `stability` measures how much a baseline's score moves between re-splits.
"""

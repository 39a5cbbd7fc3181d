"""Source readers for the acquire stage, one module per kind of source.

Each reader takes its validated source config and returns a `SourceBatch`: the raw records
as a DataFrame with a 1-based `source_row`, plus the records it could not parse. The acquire
stage maps the columns to the common schema and adds provenance, whatever the source type.
"""

"""DVC stages of the fine-tuning data pipeline, one module per stage."""

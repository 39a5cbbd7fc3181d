"""LoRA fine-tuning of a sequence classifier: data batching, the training loop and checkpoints."""

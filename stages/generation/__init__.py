"""Generation track: prompts, LoRA training examples, decoding baselines, text metrics and forgetting."""

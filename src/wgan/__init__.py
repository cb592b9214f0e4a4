"""WGAN pipeline library: prepared-data format, losses, models, training, sampling, evaluation."""

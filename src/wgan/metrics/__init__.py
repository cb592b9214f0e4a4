"""Evaluation metrics on plain numpy arrays (features, labels, images, masks).

One module per family (``classes``, ``frechet``, ``kid``, ``masks``,
``precision_recall``, ``swd``); import from the module. This file imports nothing, so
the train stage, which needs only ``masks``, does not load (or depend, in dvc.yaml) on
the rest. Everything except ``inception`` is pure numpy/scipy;
``wgan.metrics.inception`` holds the Keras feature extractor.
"""

"""The prepared-data format: the one contract between ``prepare`` and every later stage.

:mod:`~wgan.prepared.format` defines the layout, the records and ``meta.json``;
:mod:`~wgan.prepared.write` writes them (``prepare`` only) and :mod:`~wgan.prepared.read`
reads them back. This file imports nothing, so the stages after ``prepare`` depend (in
dvc.yaml) on ``format`` and ``read`` only: editing the writer re-runs ``prepare`` alone,
whose output stays byte-identical unless the format itself changed.
"""

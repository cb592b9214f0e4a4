"""Benchmarks of the pipeline's speed and memory: ``python -m benchmarks.run`` (``make bench``).

One module per component (``prepare``, ``evaluation``, ``dvc_pipeline``, ``train_steps``,
``input_pipeline``), each with ``run(size) -> list[Figure]``; ``run`` merges their figures
into ``results.json`` and renders the tables of ``BENCHMARKS.md``.
"""

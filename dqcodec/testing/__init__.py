"""Helpers for dqcodec's tests, scripts and benchmarks; not part of the codec's API.

- ``models``: tiny random-weight models (``tiny_model``, the ``TINY`` and ``TINY_3`` configurations) and
  ``photo_like`` test images;
- ``fuzzing``: the mutation fuzzer of everything dqcodec reads from outside (tests/test_fuzz.py, scripts/fuzz.py);
- ``kernels``: decoding .dq files in fresh processes that run other kernels (tests/test_portable.py,
  scripts/make_golden.py, benchmarks/portability.py).

Importing this package imports none of them (nor torch).
"""

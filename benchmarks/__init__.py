"""The package's benchmarks: scripts, run from the repository's root as
``python benchmarks/benchmark.py``, ``python benchmarks/scale.py`` and
``python benchmarks/sbc_validation.py`` (not installed with the package).

A package only so that the scripts share :mod:`benchmarks.common` and the peers'
runners of :mod:`benchmarks.peers`: a script run by its path puts the repository's root
on ``sys.path`` before it imports them.
"""

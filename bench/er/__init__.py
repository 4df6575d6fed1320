"""``python -m bench.er``: entity-resolution quality and speed, streamed through the real resolver.

See ``bench/er/README.md``.
"""

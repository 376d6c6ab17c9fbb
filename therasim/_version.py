__version__ = "0.1.0"
# Bumped when the on-disk layout of a run directory changes incompatibly.
RUN_FORMAT_VERSION = 1

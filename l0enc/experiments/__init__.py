"""The library side of the paper experiments.

Each experiment family has its own modules here (its settings, data
preparation, units, reports); `experiments/<name>.py` are thin absl mains
over them, configured by `experiments/configs/<name>_<preset>.py`. The
shared machinery is in `units` (resumable units and results files) and
`configs` (ml_collections configs to the experiments' settings); the papers'
published numbers are in `paper`. The core modules of `l0enc` import nothing
from this package.
"""

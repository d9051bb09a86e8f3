"""edgecv: take an image classifier from training to a small, fast TFLite model, with numbers.

The package imports nothing heavy at import time; TensorFlow is loaded by the modules that need it
(through ``edgecv._tf``), so ``edgecv --help`` and the on-device runtime stay light.
"""

__version__ = "0.1.0"

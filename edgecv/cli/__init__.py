"""The ``edgecv`` command line: ``app.py`` holds the app and its command list, one module per wing holds the
commands, ``ui.py`` renders. Importing this package loads no TensorFlow."""

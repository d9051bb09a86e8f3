"""``python -m edgecv``: the same CLI as the ``edgecv`` console script."""

from .cli import main

main()

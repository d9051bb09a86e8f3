"""``python -m edgecv``: the same CLI as the ``edgecv`` console script."""

from edgecv.cli.app import main

main()

"""The ``edgelll`` command line, installed as ``edgelll.cli``: one thin file per command."""

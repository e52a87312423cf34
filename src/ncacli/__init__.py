"""nca: a command-line toolkit for Neural Cellular Automata."""

__version__ = "0.1.0"

"""The toolkit's one stderr console: progress, notes and tables, leaving stdout to data (JSON, states)."""

from rich.console import Console

console = Console(stderr=True)

"""Command-line interface (typer + rich). Heavy libraries are imported inside the commands."""

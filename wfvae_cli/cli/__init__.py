"""Typer commands. Each is a thin layer: parse options, call the library, render with Rich."""

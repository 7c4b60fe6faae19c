"""Thin typer commands: build a config, call one library function, render the result."""

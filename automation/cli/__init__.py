"""Typer layer: parse, call the core, render. No logic lives here."""

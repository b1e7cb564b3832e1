"""Simulator module (placeholder until implemented)."""

from __future__ import annotations

import typer


def register(sim_app: typer.Typer) -> None:
    """Add this simulator's sub-command to `villageami sim`."""

"""Render: a markdown and HTML report of stored runs, with figures that carry their provenance."""

"""Figures. Physics code never imports this package."""

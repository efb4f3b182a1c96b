"""Results of finished sweeps: comparison tables, best-config selection, dashboard."""

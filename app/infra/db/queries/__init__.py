"""SQL lives here and only here: one module per table family, no commits (the edge commits)."""

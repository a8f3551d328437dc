"""HTTP edge: app factory, dependencies, the one error renderer, routes."""

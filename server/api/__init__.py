"""HTTP blueprints, one per resource: sync, devices, tags, lookup, appeals, admin, ops."""

"""The portals b24notify serves: configured webhook portals (env or TOML file) and, in app mode,
portals that installed the app (kept in Redis)."""

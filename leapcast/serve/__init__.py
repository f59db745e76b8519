"""The HTTP server: ``leapcast serve`` (docs/serving.md). ``create_app`` builds the app, ``run`` serves it."""

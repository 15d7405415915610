"""Where training code already lives: framework loggers and importers of other trackers' files.

Each module is optional: it imports its framework when it is used, and its extra installs it.
"""

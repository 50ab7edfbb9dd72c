"""``klio``, Spotify Klio's library package name, kept so a Klio job's ``run.py`` and
``transforms.py`` import unchanged. Every module here re-exports ours; none holds logic.
"""

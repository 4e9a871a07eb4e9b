"""Storage primitives: the bottom layer every backend and the provisioning engine stand on.

Nothing here imports ``backends``, ``provision``, ``sim`` or ``cli``: it knows files,
paths and storage tools, not fleets.
"""

"""Real clones on real storage: golden images, writes that emulate a boot, measurement.

``goldimage`` builds a small golden image (GI) with a real ext4 filesystem,
``writes`` writes a boot's footprint into a clone (never into a GI) and
``measure`` accounts the capacity clones really consume, counting shared data
once. The backends (``clonefleet.backends``) create the clones themselves.
"""

"""A real guest operating system: a bootable Debian golden image, and its boot captured as a block trace.

- :mod:`clonefleet.guest.debian`: :func:`~clonefleet.guest.debian.build_debian_gi` builds a Debian
  GI from Debian's packages (debootstrap, its own kernel inside), raw and qcow2, with a manifest of
  every package version and both images' SHA-256, cached so it is built once per recipe.
- :mod:`clonefleet.guest.capture`: :func:`~clonefleet.guest.capture.capture_boot` boots a linked
  clone of a GI under QEMU (KVM where it works, TCG otherwise) with block tracing and writes the
  trace, the console log, the clone's growth and the provenance.
"""

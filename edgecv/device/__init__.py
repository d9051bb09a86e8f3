"""Devices: kits for a Raspberry Pi or Coral board and their merged results, Edge TPU readiness, and an
emulated Pi. The benchmark core those kits run is ``edgecv/runtime.py``, on the ground floor."""

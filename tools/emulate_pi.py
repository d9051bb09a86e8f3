"""Run an edgecv device kit on an emulated Raspberry Pi OS userland (Debian bookworm arm64 under qemu).

Usage (as root, with qemu-user-static, binfmt-support and debootstrap installed):
    python tools/emulate_pi.py KIT [--runtime tflite_runtime --runtime ai_edge_litert] [--out emulated/]

The same as ``edgecv device emulate``: builds and caches the root once, makes one venv per runtime inside it,
runs the kit there and on this host, and prints the merged table with the per-image top-1 agreement.
"""

from edgecv.cli import main

if __name__ == "__main__":
    import sys

    sys.argv[1:1] = ["device", "emulate"]
    main()

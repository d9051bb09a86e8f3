"""Data: CIFAR-10 and image folders into arrays (``datasets``), or streamed from disk (``stream``)."""

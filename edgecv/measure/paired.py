"""Whether an accuracy drop is real: two models compared image by image on the same test images.

Two accuracies measured on the same images are not independent samples: most images are right (or wrong)
for both models, and only the images where the two disagree carry information about which is better. So
the tests here are paired: McNemar's exact test on the discordant images, and a bootstrap that resamples
whole images (both models' answers together). Only numpy and the standard library: the gate must not need
TensorFlow or scipy to judge a device's result file.

Units follow the gate's: accuracies are fractions in [0, 1] (as in ``StageResult``), drops and their
interval are accuracy points (reference minus candidate: positive means the candidate lost accuracy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from edgecv.errors import DataError

RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` images only the reference got right and ``c`` only the
    candidate got right.

    With no real difference each discordant image is a fair coin, so min(b, c) is Binomial(b + c, 1/2)
    and p = 2 P(X <= min(b, c)), capped at 1. Computed with exact integers: no normal approximation, which
    is wrong for the handful of discordant images a small test set or a gentle quantization gives.
    """
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts cannot be negative, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    term, tail = 1, 0  # C(n, 0); the running sum of C(n, i) for i <= min(b, c)
    for i in range(min(b, c) + 1):
        tail += term
        term = term * (n - i) // (i + 1)
    return min(1.0, 2 * tail / 2**n)  # int / int is correctly rounded in Python, whatever the size


def bootstrap_drop_interval(b: int, c: int, images: int, resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                            seed: int = SEED) -> tuple[float, float]:
    """Percentile interval, in points, of the paired accuracy drop (reference minus candidate) when the
    ``images`` are resampled with replacement.

    The drop of a resample depends only on how many of its images are of each kind (reference-only right,
    candidate-only right, the rest), and those counts are multinomial: drawing them is the same bootstrap as
    drawing image indices, in memory that does not grow with the test set. Seeded: a CI run gets the same
    interval every time.
    """
    if images <= 0:
        raise ValueError("no images to resample")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    rest = images - b - c
    if b < 0 or c < 0 or rest < 0:
        raise ValueError(f"b={b} and c={c} do not fit in {images} images")
    counts = np.random.default_rng(seed).multinomial(images, [b / images, c / images, rest / images], size=resamples)
    drops = 100.0 * (counts[:, 0] - counts[:, 1]) / images
    tail = (1 - confidence) / 2
    low, high = np.quantile(drops, [tail, 1 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class ClassDelta:
    """One class's accuracy for both models, on that class's images only."""

    label: int
    name: str
    images: int
    reference_accuracy: float  # 0-1
    candidate_accuracy: float  # 0-1
    drop: float  # points, reference minus candidate
    b: int  # this class's images the reference got right and the candidate wrong
    c: int  # the reverse
    p_value: float  # McNemar's exact test on this class's images alone

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PairedComparison:
    """A reference and a candidate scored on the same images, image by image."""

    images: int
    reference_accuracy: float  # 0-1
    candidate_accuracy: float  # 0-1
    drop: float  # points, reference minus candidate, = 100 (b - c) / images
    changed: int  # images whose top-1 class differs (b + c, plus images both got wrong differently)
    b: int  # reference right, candidate wrong
    c: int  # reference wrong, candidate right
    p_value: float  # McNemar's exact two-sided test of b against c
    interval: tuple[float, float]  # bootstrap interval of the drop, points
    confidence: float  # of the interval
    resamples: int
    seed: int
    per_class: tuple[ClassDelta, ...]  # classes that have test images, by label

    @property
    def worst_class(self) -> ClassDelta | None:
        """The class that lost the most points (the lowest label among equals), None without classes."""
        return max(self.per_class, key=lambda k: (k.drop, -k.label), default=None)

    def to_dict(self) -> dict:
        worst = self.worst_class
        return {
            "images": self.images, "reference_accuracy": self.reference_accuracy,
            "candidate_accuracy": self.candidate_accuracy, "drop": self.drop, "changed": self.changed,
            "b": self.b, "c": self.c, "p_value": self.p_value, "interval": list(self.interval),
            "confidence": self.confidence, "resamples": self.resamples, "seed": self.seed,
            "worst_class": None if worst is None else worst.name,
            "per_class": [k.to_dict() for k in self.per_class],
        }


def _classes(values, what: str, images: int | None = None) -> np.ndarray:
    a = np.asarray(values)
    if a.ndim != 1 or (images is not None and len(a) != images):
        raise DataError(f"{what} must be one class index per image ({images or 'a flat list'}), got shape {a.shape}")
    if a.size and (a.dtype.kind not in "iu" or a.min() < 0):
        raise DataError(f"{what} must be class indices (integers >= 0)")
    return a.astype(np.int64)


def compare(labels, reference, candidate, classes: Sequence[str] | None = None, resamples: int = RESAMPLES,
            confidence: float = CONFIDENCE, seed: int = SEED) -> PairedComparison:
    """Compares the ``reference``'s and ``candidate``'s top-1 classes on the images whose true classes are
    ``labels`` (all three in the same image order).

    ``classes`` names the class indices; without it they are named by number.

    Raises:
        DataError: arrays of different lengths, no images, or values that are not class indices.
    """
    y = _classes(labels, "labels")
    if not len(y):
        raise DataError("no images to compare")
    ref = _classes(reference, "the reference's predictions", len(y))
    cand = _classes(candidate, "the candidate's predictions", len(y))
    names = list(classes) if classes is not None else [str(k) for k in range(int(y.max()) + 1)]
    if y.max() >= len(names):
        raise DataError(f"label {int(y.max())} has no name among the {len(names)} classes")
    ref_right, cand_right = ref == y, cand == y
    b, c = int(np.sum(ref_right & ~cand_right)), int(np.sum(~ref_right & cand_right))
    per_class = []
    for k, name in enumerate(names):
        mine = y == k
        n = int(mine.sum())
        if not n:
            continue  # a class with no test images has no accuracy: left out, never shown as 0 %
        bk, ck = int(np.sum(mine & ref_right & ~cand_right)), int(np.sum(mine & ~ref_right & cand_right))
        per_class.append(ClassDelta(k, str(name), n, float(ref_right[mine].mean()), float(cand_right[mine].mean()),
                                    100.0 * (bk - ck) / n, bk, ck, mcnemar_exact(bk, ck)))
    return PairedComparison(
        images=len(y), reference_accuracy=float(ref_right.mean()), candidate_accuracy=float(cand_right.mean()),
        drop=100.0 * (b - c) / len(y), changed=int(np.sum(ref != cand)), b=b, c=c, p_value=mcnemar_exact(b, c),
        interval=bootstrap_drop_interval(b, c, len(y), resamples, confidence, seed), confidence=confidence,
        resamples=resamples, seed=seed, per_class=tuple(per_class),
    )

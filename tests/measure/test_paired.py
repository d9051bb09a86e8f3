import numpy as np
import pytest

from edgecv.errors import DataError
from edgecv.measure.paired import bootstrap_drop_interval, compare, mcnemar_exact

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing


@pytest.mark.parametrize("b, c, p", [
    (0, 5, 2 / 32),  # 2 * C(5,0) / 2^5 = 0.0625
    (1, 9, 2 * (1 + 10) / 1024),  # 2 * (C(10,0) + C(10,1)) / 2^10
    (2, 8, 2 * (1 + 10 + 45) / 1024),
    (0, 1, 1.0),  # 2 * 1/2, capped at 1
    (3, 3, 1.0),
    (0, 0, 1.0),  # no discordant image: no evidence either way
])
def test_mcnemar_exact_matches_the_binomial_by_hand(b, c, p):
    assert mcnemar_exact(b, c) == pytest.approx(p, rel=1e-12)
    assert mcnemar_exact(c, b) == mcnemar_exact(b, c)  # two-sided: which model is "reference" does not matter


def test_mcnemar_exact_agrees_with_scipy_and_survives_large_counts():
    stats = pytest.importorskip("scipy.stats")
    for b, c in [(4, 17), (30, 45), (2400, 2600), (0, 60)]:
        assert mcnemar_exact(b, c) == pytest.approx(stats.binomtest(min(b, c), b + c, 0.5).pvalue, rel=1e-9)
    assert 0 < mcnemar_exact(5000, 4000) < 1e-20  # exact integers: no overflow, no NaN at 9,000 discordant images
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


def test_bootstrap_interval_is_seeded_and_brackets_the_observed_drop():
    first = bootstrap_drop_interval(40, 10, 1000, seed=3)
    assert first == bootstrap_drop_interval(40, 10, 1000, seed=3)  # a CI run gets the same interval every time
    assert len({bootstrap_drop_interval(40, 10, 1000, resamples=50, seed=s) for s in range(10)}) > 1  # the seed is used
    low, high = first
    assert low < 100 * (40 - 10) / 1000 < high
    assert 1.0 < low and high < 5.0  # about 3 +- 2 standard errors (sd of the drop here is about 0.7 points)
    assert bootstrap_drop_interval(0, 0, 50) == (0.0, 0.0)


def test_bootstrap_interval_covers_the_true_drop_about_95_percent_of_the_time():
    """Test sets of 500 images drawn from a population where the candidate loses 6 % of the images and
    wins back 2 %: the true drop is 4 points. A right interval covers it in about 95 % of the test sets."""
    rng = np.random.default_rng(11)
    true_drop, trials, covered = 4.0, 200, 0
    for seed in range(trials):
        b, c, _ = rng.multinomial(500, [0.06, 0.02, 0.92])
        low, high = bootstrap_drop_interval(int(b), int(c), 500, resamples=1000, seed=seed)
        covered += low <= true_drop <= high
    assert 0.88 <= covered / trials <= 0.99


def test_the_multinomial_shortcut_is_the_image_bootstrap():
    """Resampling image indices gives the same interval as drawing the category counts (up to noise)."""
    rng = np.random.default_rng(0)
    n, b, c = 400, 30, 14
    d = np.array([1] * b + [-1] * c + [0] * (n - b - c))
    drops = [100 * d[rng.integers(0, n, n)].mean() for _ in range(4000)]
    by_index = np.quantile(drops, [0.025, 0.975])
    assert bootstrap_drop_interval(b, c, n, resamples=4000) == pytest.approx(tuple(by_index), abs=0.6)


def test_per_class_drops_changed_count_and_discordant_pairs():
    labels = np.array([0] * 10 + [1] * 10 + [2] * 10)
    reference = labels.copy()
    reference[[0, 10]] = [1, 2]  # the reference misses one image of class 0 and one of class 1
    candidate = reference.copy()
    candidate[[20, 21, 22, 23]] = 0  # loses four images of class 2
    candidate[0] = 0  # wins back the class-0 image the reference missed
    candidate[10] = 0  # a different wrong answer on an image both get wrong
    got = compare(labels, reference, candidate, ["cat", "dog", "ship"])
    assert (got.b, got.c) == (4, 1)
    assert got.changed == 6  # b + c + the image both got wrong differently
    assert got.drop == pytest.approx(100 * (4 - 1) / 30)
    assert got.reference_accuracy == pytest.approx(28 / 30) and got.candidate_accuracy == pytest.approx(25 / 30)
    by_name = {k.name: k for k in got.per_class}
    assert by_name["cat"].drop == pytest.approx(-10.0) and by_name["dog"].drop == pytest.approx(0.0)
    assert by_name["ship"].drop == pytest.approx(40.0) and (by_name["ship"].b, by_name["ship"].c) == (4, 0)
    assert by_name["ship"].p_value == pytest.approx(2 / 16)
    assert got.worst_class.name == "ship"
    assert got.p_value == pytest.approx(mcnemar_exact(4, 1))
    d = got.to_dict()
    assert d["worst_class"] == "ship" and len(d["per_class"]) == 3 and d["interval"][0] <= d["drop"] <= d["interval"][1]


def test_a_class_without_test_images_is_left_out_not_shown_as_zero():
    labels = np.array([0, 0, 2, 2])
    got = compare(labels, labels, labels, ["a", "b", "c"])
    assert [k.name for k in got.per_class] == ["a", "c"]
    assert got.changed == 0 and got.drop == 0 and got.p_value == 1.0


@pytest.mark.parametrize("labels, reference, candidate, message", [
    ([0, 1, 2], [0, 1], [0, 1, 2], "one class index per image"),
    ([], [], [], "no images"),
    ([0, 1], [0, 1], [0.5, 1], "class indices"),
    ([0, 5], [0, 1], [0, 1], "no name"),
])
def test_mismatched_inputs_are_refused(labels, reference, candidate, message):
    with pytest.raises(DataError, match=message):
        compare(labels, reference, candidate, ["a", "b"])

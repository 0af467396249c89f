"""The seeds sweep: its summary over hand-built runs, and its params checks."""
import pytest

from pipeline import config, seeds
from pipeline.errors import PipelineError
from tests.conftest import with_overrides


def test_summary_is_mean_std_and_range_and_counts_a_seed_that_never_specialised():
    runs = [{"seed": 0, "a": 1.0, "t": 200}, {"seed": 1, "a": 3.0, "t": None}, {"seed": 2, "a": 2.0, "t": 300}]
    s = seeds.summarise(runs, keys=("a", "t"))
    assert s["seeds"] == [0, 1, 2]
    assert s["mean"]["a"] == 2.0 and s["std"]["a"] == pytest.approx(0.8165, abs=1e-4)
    assert (s["min"]["a"], s["max"]["a"], s["missing"]["a"]) == (1.0, 3.0, 0)
    assert s["mean"]["t"] == 250 and s["missing"]["t"] == 1          # summarised over the two that have it
    assert seeds.summarise([{"seed": 0, "t": None}], keys=("t",))["mean"] == {}


def test_headlines_read_every_dotted_key():
    result = {"specialization": {"distinct_winners": 9, "purity_mean": 0.9, "purity_min": 0.5},
              "train": {"iterations_to_specialize": None, "seconds_to_specialize": None,
                        "purity_min_after_specialized": None},
              "classifier": {"acc_clean": 0.9, "acc_clean_same_digits": 0.95, "acc_experts": 0.8,
                             "acc_clean_all_digits": 0.92, "acc_experts_all_digits": 0.85}, "dead_experts": 1}
    row = seeds.headlines(result, 4)
    assert row["seed"] == 4 and row["specialization.distinct_winners"] == 9 and row["dead_experts"] == 1
    assert set(row) == {"seed", *seeds.HEADLINES}


@pytest.mark.parametrize("overrides, message", [
    ({"seeds.values": [0]}, "at least 2 seeds"),
    ({"seeds.values": [0, 0, 1]}, "repeats a seed"),
    ({"seeds.datasets": ["faces"]}, "mnist only"),
    ({"seeds.datasets": ["mnist"], "datasets": ["faces"]}, "'datasets' does not list"),
])
def test_bad_seeds_params_name_the_key(params, overrides, message):
    with pytest.raises(PipelineError, match=message):
        config.from_dict(with_overrides(params, overrides))

"""Slow (`make test-slow`): the default MNIST recipe, unshrunk, through `dvc repro` in a temporary copy.

It checks the result the README leads with: the paper's 10 mechanisms get 10 distinct experts with
no dead expert, and the restoration through the experts is measured on every test digit."""
import json

import pytest

from tests.conftest import with_overrides
from tests.test_e2e import dvc, make_repo


@pytest.mark.slow
def test_default_mnist_recipe_specialises(tmp_path, params):
    root = make_repo(tmp_path, with_overrides(params, {"datasets": ["mnist"], "latent.datasets": [], "debias.datasets": []}))
    dvc(root, "repro", env={"OMP_NUM_THREADS": "1"})
    m = json.loads((root / "reports/metrics/mnist.json").read_text())
    assert m["specialization"]["distinct_winners"] >= 8, m["specialization"]
    assert m["train"]["iterations_to_specialize"] is not None, m["train"]
    assert m["dead_experts"] == 0, m["per_expert"]
    assert m["classifier"]["acc_experts"] > m["classifier"]["acc_transformed"] + 0.3, m["classifier"]

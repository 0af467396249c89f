"""evaluate: assignment of held-out transformed digits to experts, purity, and classifier accuracies."""
import numpy as np
import pandas as pd

from pipeline import config, icm, loop, metrics
from pipeline.io import atomic_path, load_json, load_torch, save_json
from pipeline.models.classifier import Classifier, predict
from pipeline.paths import Paths
from pipeline.runtime import images_to, log, main, setup


@main
def run(dataset: str) -> None:
    cfg = config.load()
    ds = cfg.dataset(dataset)
    device = setup(cfg.seed, cfg.device)
    paths = Paths(dataset)
    t = load_torch(paths.prepared / "tensors.pt")
    names = t["mechanisms"]
    x_clean, x_trans = images_to(t["test_canonical"], device), images_to(t["test_transformed"], device)
    y_clean, y_trans = t["test_canonical_digit"].numpy(), t["test_transformed_digit"].numpy()
    mech = t["test_transformed_mech"].numpy()
    trained = load_torch(paths.models / "trained.pt")
    bank, disc = loop.build(ds.experts, x_trans.shape[1], x_trans.shape[-1], device, trained["bank"], trained["disc"])
    saved = load_torch(paths.models / "classifier.pt")
    clf = Classifier(x_trans.shape[1], x_trans.shape[-1], saved["num_classes"])
    clf.load_state_dict(saved["state"])
    clf.to(device)

    bs = ds.evaluate.batch_size
    owner, out = icm.winners(bank, disc, x_trans, bs)
    owner = owner.cpu().numpy()
    m = metrics.assignment_matrix(mech, owner, len(names), bank.n)
    pur = metrics.purity(m)
    p_clean = predict(clf, x_clean, bs).cpu().numpy()
    p_trans = predict(clf, x_trans, bs).cpu().numpy()
    p_out = predict(clf, out, bs).cpu().numpy()
    train = load_json(paths.models / "train.json")
    result = {
        "classifier": {"acc_clean": metrics.accuracy(p_clean, y_clean),
                       "acc_transformed": metrics.accuracy(p_trans, y_trans),
                       "acc_experts": metrics.accuracy(p_out, y_trans)},
        "specialization": {"n_mechanisms": len(names), "n_experts": bank.n,
                           "distinct_winners": metrics.distinct_winners(m),
                           "purity_mean": float(np.nanmean(pur)), "purity_min": float(np.nanmin(pur))},
        "train": {k: train[k] for k in ("iterations", "seconds", "iters_per_second",
                                        "iterations_to_specialize", "seconds_to_specialize")},
        "per_mechanism": {
            name: {"dominant_expert": int(m[j].argmax()), "purity": float(pur[j]),
                   "acc_transformed": metrics.accuracy(p_trans[mech == j], y_trans[mech == j]),
                   "acc_experts": metrics.accuracy(p_out[mech == j], y_trans[mech == j])}
            for j, name in enumerate(names)},
    }
    save_json(result, paths.metrics)
    with atomic_path(paths.plots / "assignment.csv") as tmp:
        pd.DataFrame({"mechanism": [names[j] for j in mech], "expert": owner}).to_csv(tmp, index=False)
    log(f"evaluate: {result['specialization']} {result['classifier']}")


if __name__ == "__main__":
    run()

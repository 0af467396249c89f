"""evaluate: held-out transformed samples -> winners (argmax of D) -> reports/metrics/<ds>.json
(see pipeline/evaluation.py for both contracts) and the assignment CSV plot."""
import pandas as pd

from pipeline import config, evaluation, icm, loop
from pipeline.io import atomic_path, load_json, load_torch, save_json
from pipeline.models import classifier
from pipeline.models.classifier import predict
from pipeline.paths import Paths
from pipeline.runtime import images_to, log, main, setup, skip_if_unavailable


@main
def run(dataset: str) -> None:
    cfg = config.load()
    ds = cfg.dataset(dataset)
    paths = Paths(dataset)
    if skip_if_unavailable(paths, "evaluate", [paths.metrics, paths.plots / "assignment.csv"]):
        return
    device = setup(cfg.seed, cfg.device)
    t = load_torch(paths.prepared / "tensors.pt")
    names, mech = t["mechanisms"], t["test_transformed_mech"].numpy()
    channels, size = t["test_transformed"].shape[1], t["test_transformed"].shape[-1]
    trained = load_torch(paths.models / "trained.pt")
    bank, disc = loop.build(ds.experts, channels, size, device, trained["bank"], trained["disc"])
    saved = load_torch(paths.models / "classifier.pt")
    clf = classifier.load(saved, channels, size, device)
    train = load_json(paths.models / "train.json")
    bs = ds.evaluate.batch_size
    if isinstance(ds, config.MnistConfig):
        x_trans = images_to(t["test_transformed"], device)
        owner, out = icm.winners(bank, disc, x_trans, bs)
        owner = owner.cpu().numpy()
        p_clean, p_trans, p_out = (predict(clf, a, bs).cpu().numpy()
                                   for a in (images_to(t["test_canonical"], device), x_trans, out))
        result = evaluation.mnist(names, mech, owner, bank.n, p_clean, t["test_canonical_digit"].numpy(), p_trans,
                                  p_out, t["test_transformed_digit"].numpy(), train)
    else:
        result, owner = evaluation.faces_on_test(bank, disc, clf, saved, t, train, bs, device)
    save_json(result, paths.metrics)
    with atomic_path(paths.plots / "assignment.csv") as tmp:
        pd.DataFrame({"mechanism": [names[j] for j in mech], "expert": owner}).to_csv(tmp, index=False)
    log(f"evaluate: {result['specialization']} {result['classifier']}")


if __name__ == "__main__":
    run()

"""evaluate: held-out transformed samples -> every expert's outputs, winners (argmax of D) ->
reports/metrics/<ds>.json (see pipeline/evaluation.py for both contracts) and the assignment CSV plot."""
import pandas as pd

from pipeline import config, evaluation, loop
from pipeline.io import atomic_path, load_json, load_torch, save_json
from pipeline.models import classifier
from pipeline.paths import Paths
from pipeline.runtime import log, main, setup, skip_if_unavailable


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
    bank, disc = loop.build(ds.experts, channels, size, device, trained["bank"], trained["disc"], ds.train.spectral_norm)
    disc.eval()   # spectral norm: use the trained estimate, no power iteration while evaluating
    saved = load_torch(paths.models / "classifier.pt")
    clf = classifier.load(saved, channels, size, device)
    train = evaluation.timing(load_json(paths.models / "train.json"), load_json(paths.models / "pretrain.json"))
    bs = ds.evaluate.batch_size
    if isinstance(ds, config.MnistConfig):
        strength = evaluation.mnist_strength(ds.data, cfg.seed)
        result, owner = evaluation.mnist_on_test(bank, disc, clf, t, train, bs, device, strength)
    else:
        gender = saved.get("gender")
        gclf = classifier.load(gender, channels, size, device) if gender else None
        result, owner = evaluation.faces_on_test(bank, disc, clf, saved, t, train, bs, device, ds.data.strength, gclf)
    save_json(result, paths.metrics)
    with atomic_path(paths.plots / "assignment.csv") as tmp:
        pd.DataFrame({"mechanism": [names[j] for j in mech], "expert": owner}).to_csv(tmp, index=False)
    log(f"evaluate: {result['specialization']} {result['classifier']} dead experts {result['dead_experts']}/{bank.n}")


if __name__ == "__main__":
    run()
